// An independent client library against xmppd: xmpp.js (@xmpp/client, npm), unmodified.
//
// Run by tests/integration/test_xmppjs_client.py:
//   node xmppjs_probe.mjs SERVICE USER PASSWORD ROOM PEER
// SERVICE is xmpp://127.0.0.1:PORT (TCP, STARTTLS) or ws://127.0.0.1:PORT/xmpp-websocket.
// It logs in (xmpp.js picks its own SASL mechanism and enables XEP-0198), joins ROOM,
// says one line there and one to PEER, pings the server, reads its roster, and prints one
// JSON line per outcome for the test to check; then it closes the stream cleanly.

import { client, xml } from '@xmpp/client';
import WebSocket from 'ws';

globalThis.WebSocket ??= WebSocket; // Node 20 has no global WebSocket; xmpp.js wants one

const [service, username, password, room, peer] = process.argv.slice(2);
const report = (what, value) => console.log(JSON.stringify({ what, value }));
const xmpp = client({ service, domain: 'localhost', username, password, resource: 'xmppjs' });
const nick = `${username}-xmppjs`;
const line = `hello from xmpp.js over ${service.split(':')[0]}`;

const give_up = setTimeout(() => {
    report('timeout', true);
    process.exit(2);
}, 20000);

xmpp.on('error', (err) => report('error', String(err)));

let finishing = false;
xmpp.on('stanza', async (stanza) => {
    if (!stanza.is('message') || stanza.attrs.type !== 'groupchat') return;
    if (stanza.getChildText('body') !== line || finishing) return;
    finishing = true;
    const sid = stanza.getChild('stanza-id', 'urn:xmpp:sid:0');
    report('echo', { from: stanza.attrs.from, stanza_id: sid?.attrs.id ?? null, by: sid?.attrs.by ?? null });
    await xmpp.send(xml('message', { to: peer, type: 'chat' }, xml('body', {}, line)));
    const pong = await xmpp.iqCaller.request(
        xml('iq', { type: 'get', to: 'localhost' }, xml('ping', 'urn:xmpp:ping')),
    );
    report('ping', pong.attrs.type);
    const roster = await xmpp.iqCaller.request(xml('iq', { type: 'get' }, xml('query', 'jabber:iq:roster')));
    report('roster', roster.attrs.type);
    report('sm', Boolean(xmpp.streamManagement?.enabled));
    await xmpp.stop();
    clearTimeout(give_up);
    report('done', true);
});

xmpp.on('online', async (address) => {
    report('online', address.toString());
    await xmpp.send(xml('presence'));
    await xmpp.send(
        xml('presence', { to: `${room}/${nick}` }, xml('x', 'http://jabber.org/protocol/muc', {}, xml('history', { maxstanzas: '0' }))),
    );
});

xmpp.on('stanza', async (stanza) => {
    // our own presence in the room (status 110): joined, now speak
    if (!stanza.is('presence') || stanza.attrs.from !== `${room}/${nick}`) return;
    const x = stanza.getChild('x', 'http://jabber.org/protocol/muc#user');
    if (!x || !x.getChildren('status').some((s) => s.attrs.code === '110')) return;
    report('joined', true);
    await xmpp.send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, line)));
});

xmpp.start().catch((err) => {
    report('start-failed', String(err));
    process.exit(1);
});
