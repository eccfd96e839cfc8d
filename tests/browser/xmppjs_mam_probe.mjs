// xmpp.js (@xmpp/client, npm, unmodified) with carbons (XEP-0280) and the account's
// archive (XEP-0313) against xmppd.
//
// Run by tests/integration/test_xmppjs_client.py:
//   node xmppjs_mam_probe.mjs SERVICE USER PASSWORD PEER
// It logs in as USER/xmppjs, enables carbons, then sends presence (so carbons are on
// before anything can arrive); waits for the carbon of a message PEER sends to another
// resource of USER; sends PEER one line (the other resource gets its sent carbon);
// queries its own archive, newest page first, and prints one JSON line per outcome.

import { client, xml } from '@xmpp/client';
import WebSocket from 'ws';

globalThis.WebSocket ??= WebSocket;

const [service, username, password, peer] = process.argv.slice(2);
const report = (what, value) => console.log(JSON.stringify({ what, value }));
const xmpp = client({ service, domain: 'localhost', username, password, resource: 'xmppjs' });
const CARBONS = 'urn:xmpp:carbons:2';
const MAM = 'urn:xmpp:mam:2';
const own = `${username}@localhost`;

const give_up = setTimeout(() => {
    report('timeout', true);
    process.exit(2);
}, 25000);

xmpp.on('error', (err) => report('error', String(err)));

const results = [];
let carbonSeen = false;
xmpp.on('stanza', async (stanza) => {
    if (!stanza.is('message')) return;
    const result = stanza.getChild('result', MAM);
    if (result) {
        const inner = result.getChild('forwarded', 'urn:xmpp:forward:0')?.getChild('message');
        results.push({ id: result.attrs.id, body: inner?.getChildText('body') ?? null, from: stanza.attrs.from });
        return;
    }
    const received = stanza.getChild('received', CARBONS);
    if (!received || carbonSeen || stanza.attrs.from !== own) return;
    carbonSeen = true;
    const inner = received.getChild('forwarded', 'urn:xmpp:forward:0').getChild('message');
    const sid = inner.getChild('stanza-id', 'urn:xmpp:sid:0');
    report('carbon', { body: inner.getChildText('body'), to: inner.attrs.to, by: sid?.attrs.by ?? null });
    await xmpp.send(xml('message', { to: peer, type: 'chat' }, xml('body', {}, 'from xmpp.js')));
    const fin = await xmpp.iqCaller.request(
        xml('iq', { type: 'set' },
            xml('query', { xmlns: MAM, queryid: 'js' },
                xml('set', 'http://jabber.org/protocol/rsm', xml('max', {}, '10'), xml('before')))),
    );
    const finEl = fin.getChild('fin', MAM);
    report('archive', { bodies: results.map((r) => r.body), from: [...new Set(results.map((r) => r.from))],
        complete: finEl?.attrs.complete ?? null });
    await xmpp.stop();
    clearTimeout(give_up);
    report('done', true);
});

xmpp.on('online', async (address) => {
    report('online', address.toString());
    const enabled = await xmpp.iqCaller.request(xml('iq', { type: 'set' }, xml('enable', CARBONS)));
    report('carbons', enabled.attrs.type);
    await xmpp.send(xml('presence'));
});

xmpp.start().catch((err) => {
    report('start-failed', String(err));
    process.exit(1);
});
