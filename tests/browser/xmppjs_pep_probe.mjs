// xmpp.js (@xmpp/client, npm, unmodified) with PEP avatars (XEP-0084 over XEP-0163),
// XEP-0402 bookmarks and paged queries of the account's archive (XEP-0313 + XEP-0059).
//
// Run by tests/integration/test_xmppjs_client.py:
//   node xmppjs_pep_probe.mjs avatar    SERVICE USER PASSWORD CONTACT
//   node xmppjs_pep_probe.mjs bookmarks SERVICE USER PASSWORD ROOM
//   node xmppjs_pep_probe.mjs mam       SERVICE USER PASSWORD WITH
// It logs in as USER/xmppjs with XEP-0115 caps (computed here, §5.1) whose features ask
// for avatar metadata and bookmark notifications (+notify, XEP-0163 §4), answers the
// server's disco#info about them, runs one flow and prints one JSON line per outcome:
// what it received, as xmpp.js parsed it.

import { createHash } from 'node:crypto';
import { client, xml } from '@xmpp/client';
import WebSocket from 'ws';

globalThis.WebSocket ??= WebSocket;

const [mode, service, username, password, other] = process.argv.slice(2);
const report = (what, value) => console.log(JSON.stringify({ what, value }));
const xmpp = client({ service, domain: 'localhost', username, password, resource: 'xmppjs' });
const own = `${username}@localhost`;

const DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const CAPS = 'http://jabber.org/protocol/caps';
const PUBSUB = 'http://jabber.org/protocol/pubsub';
const EVENT = `${PUBSUB}#event`;
const XDATA = 'jabber:x:data';
const META = 'urn:xmpp:avatar:metadata';
const DATA = 'urn:xmpp:avatar:data';
const BOOKMARKS = 'urn:xmpp:bookmarks:1';
const MAM = 'urn:xmpp:mam:2';
const RSM = 'http://jabber.org/protocol/rsm';
const CAPS_NODE = 'https://github.com/xmppjs/xmpp.js';
const IDENTITY = { category: 'client', type: 'bot', name: 'xmpp.js probe' };
const FEATURES = [CAPS, DISCO_INFO, `${META}+notify`, `${BOOKMARKS}+notify`].sort();
// XEP-0115 §5.1: identities then features, each followed by '<', SHA-1, base64.
const VER = createHash('sha1')
    .update(`${IDENTITY.category}/${IDENTITY.type}//${IDENTITY.name}<${FEATURES.map((f) => `${f}<`).join('')}`)
    .digest('base64');

const give_up = setTimeout(() => {
    report('timeout', true);
    process.exit(2);
}, 30000);
xmpp.on('error', (err) => report('error', String(err)));

// -- PEP events, as they arrive ---------------------------------------------------------

const waiters = [];
const events = [];
xmpp.on('stanza', (stanza) => {
    const event = stanza.is('message') && stanza.getChild('event', EVENT);
    if (!event) return;
    const items = event.getChild('items');
    if (!items) return;
    const entry = {
        from: stanza.attrs.from,
        node: items.attrs.node,
        items: items.getChildren('item').map((item) => ({ id: item.attrs.id, payload: item.getChildElements()[0] })),
        retracted: items.getChildren('retract').map((r) => r.attrs.id),
    };
    events.push(entry);
    for (const waiter of [...waiters]) {
        if (waiter.match(entry)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(entry);
        }
    }
});

function nextEvent(match) {
    const seen = events.find(match);
    if (seen) {
        events.splice(events.indexOf(seen), 1);
        return Promise.resolve(seen);
    }
    return new Promise((resolve) => waiters.push({ match, resolve }));
}

// -- helpers ---------------------------------------------------------------------------

async function iq(type, to, child) {
    try {
        const result = await xmpp.iqCaller.request(xml('iq', to ? { type, to } : { type }, child));
        return { type: result.attrs.type, result };
    } catch (err) {
        // xmpp.js rejects with a StanzaError for <iq type='error'>: keep its condition
        return { type: 'error', condition: err.condition ?? String(err) };
    }
}

function publishOptions(fields) {
    return xml('publish-options', {},
        xml('x', { xmlns: XDATA, type: 'submit' },
            xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, `${PUBSUB}#publish-options`)),
            ...Object.entries(fields).map(([k, v]) => xml('field', { var: `pubsub#${k}` }, xml('value', {}, v)))));
}

function publish(node, id, payload, options) {
    return iq('set', null, xml('pubsub', PUBSUB,
        xml('publish', { node }, xml('item', { id }, payload)),
        ...(options ? [publishOptions(options)] : [])));
}

async function items(jid, node, ids = []) {
    const got = await iq('get', jid, xml('pubsub', PUBSUB,
        xml('items', { node }, ...ids.map((id) => xml('item', { id })))));
    if (got.type !== 'result') return got;
    const list = got.result.getChild('pubsub', PUBSUB).getChild('items').getChildren('item');
    return { type: 'result', items: list.map((item) => ({ id: item.attrs.id, payload: item.getChildElements()[0] })) };
}

// -- the flows -------------------------------------------------------------------------

const PNG = Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAYAAABytg0kAAAAFklEQVR4nGP8z8DwnwEJMDEgAQYGAAA5AQEHDJ5QAAAAAElFTkSuQmCC',
    'base64');

async function avatar(contact) {
    // 1. The contact's last metadata item arrives once the server knows our +notify.
    const theirs = await nextEvent((e) => e.from === contact && e.node === META);
    const info = theirs.items[0].payload.getChild('info');
    report('contact-avatar', { id: theirs.items[0].id, bytes: info.attrs.bytes, type: info.attrs.type });
    const data = await items(contact, DATA, [theirs.items[0].id]);
    const bytes = Buffer.from(data.items[0].payload.text(), 'base64');
    report('contact-data', { id: data.items[0].id, sha1: createHash('sha1').update(bytes).digest('hex') });

    // 2. Our own avatar: data first, then metadata (XEP-0084 §4.1, §4.2).
    const id = createHash('sha1').update(PNG).digest('hex');
    const put = await publish(DATA, id, xml('data', DATA, PNG.toString('base64')));
    const meta = await publish(META, id, xml('metadata', META,
        xml('info', { bytes: String(PNG.length), id, type: 'image/png', width: '2', height: '2' })));
    report('published', { data: put.type, metadata: meta.type, id });
    const mine = await nextEvent((e) => e.from === own && e.node === META);
    report('own-event', { id: mine.items[0].id, bytes: mine.items[0].payload.getChild('info').attrs.bytes });

    // 3. The contact changes theirs (after seeing ours): a live notification.
    const update = await nextEvent((e) => e.from === contact && e.node === META && e.items[0].id !== theirs.items[0].id);
    report('contact-update', { id: update.items[0].id });
}

function conference(name, nick) {
    return xml('conference', { xmlns: BOOKMARKS, name, autojoin: 'true' }, xml('nick', {}, nick));
}

async function bookmarks(room) {
    // XEP-0402 §3.3: one item per room, id = the room's JID, with these publish-options.
    const options = { persist_items: 'true', max_items: 'max', send_last_published_item: 'never', access_model: 'whitelist' };
    const spare = 'spare@conference.localhost';
    const one = await publish(BOOKMARKS, room, conference('The site room', 'al'), options);
    const two = await publish(BOOKMARKS, spare, conference('Spare', 'al2'), options);
    report('published', [one.type, two.type]);
    const pushed = [];
    for (const id of [room, spare]) {
        const event = await nextEvent((e) => e.from === own && e.node === BOOKMARKS && e.items.some((i) => i.id === id));
        pushed.push(event.items.map((i) => [i.id, i.payload.attrs.name]));
    }
    report('events', pushed);
    const all = await items(null, BOOKMARKS);
    report('items', all.items.map((i) => ({
        id: i.id, name: i.payload.attrs.name, autojoin: i.payload.attrs.autojoin, nick: i.payload.getChildText('nick'),
    })).sort((a, b) => a.id.localeCompare(b.id)));
    // §3.4: removing a bookmark is a retract with notify.
    const retract = await iq('set', null, xml('pubsub', PUBSUB,
        xml('retract', { node: BOOKMARKS, notify: 'true' }, xml('item', { id: spare }))));
    const gone = await nextEvent((e) => e.from === own && e.node === BOOKMARKS && e.retracted.length > 0);
    report('retracted', { iq: retract.type, event: gone.retracted });
    const left = await items(null, BOOKMARKS);
    report('left', left.items.map((i) => i.id));
}

async function mamQuery(peer, rsm, queryid) {
    const results = [];
    const collect = (stanza) => {
        const result = stanza.is('message') && stanza.getChild('result', MAM);
        if (!result || stanza.attrs.from !== undefined && stanza.attrs.from !== own) return;
        const inner = result.getChild('forwarded', 'urn:xmpp:forward:0')?.getChild('message');
        results.push({ queryid: result.attrs.queryid, id: result.attrs.id, body: inner?.getChildText('body') ?? null });
    };
    xmpp.on('stanza', collect);
    const form = xml('x', { xmlns: XDATA, type: 'submit' },
        xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, MAM)),
        xml('field', { var: 'with' }, xml('value', {}, peer)));
    const set = xml('set', RSM, ...Object.entries(rsm).map(([k, v]) => xml(k, {}, v)));
    const got = await iq('set', null, xml('query', { xmlns: MAM, queryid }, form, set));
    xmpp.removeListener('stanza', collect);
    if (got.type !== 'result') return { type: got.type, condition: got.condition, results: results.length };
    const fin = got.result.getChild('fin', MAM);
    const finSet = fin.getChild('set', RSM);
    return {
        type: 'result',
        bodies: results.map((r) => r.body),
        queryids: [...new Set(results.map((r) => r.queryid))],
        ids: results.map((r) => r.id),
        first: finSet?.getChildText('first') ?? null,
        last: finSet?.getChildText('last') ?? null,
        count: finSet?.getChildText('count') ?? null,
        complete: fin.attrs.complete ?? null,
    };
}

async function mam(peer) {
    // Forwards, three at a time, from the oldest (XEP-0313 §5.1, XEP-0059 §2.2).
    const forward = [];
    let after = null;
    for (let n = 0; n < 10; n++) {
        const page = await mamQuery(peer, after ? { max: '3', after } : { max: '3' }, `f${n}`);
        forward.push(page);
        if (page.type !== 'result' || page.complete === 'true') break;
        after = page.last;
    }
    report('forward', forward);
    // Backwards from the newest (§5.1 "the last page": an empty <before/>), then the page before.
    const last = await mamQuery(peer, { max: '3', before: '' }, 'b0');
    const previous = await mamQuery(peer, { max: '3', before: last.first }, 'b1');
    report('backward', [last, previous]);
    // An absurd page size is cut to the server's limit (§4.3.1), not refused.
    report('huge', await mamQuery(peer, { max: '1000000000' }, 'huge'));
    report('negative', await mamQuery(peer, { max: '-5' }, 'neg'));
}

// -- start -----------------------------------------------------------------------------

let capsAsked;
const capsKnown = new Promise((resolve) => { capsAsked = resolve; });

xmpp.iqCallee.get(DISCO_INFO, 'query', (ctx) => {
    const node = ctx.stanza.getChild('query').attrs.node;
    if (node === `${CAPS_NODE}#${VER}`) setTimeout(capsAsked, 200); // time to verify it
    return xml('query', node ? { xmlns: DISCO_INFO, node } : { xmlns: DISCO_INFO },
        xml('identity', IDENTITY), ...FEATURES.map((f) => xml('feature', { var: f })));
});

xmpp.on('online', async (address) => {
    report('online', address.toString());
    try {
        await xmpp.send(xml('presence', {}, xml('c', { xmlns: CAPS, hash: 'sha-1', node: CAPS_NODE, ver: VER })));
        // Our +notify interests count once the server has our caps: it asks (XEP-0115
        // §6.2) unless it has seen this ver before, then it knows them at once.
        await Promise.race([capsKnown, new Promise((resolve) => setTimeout(resolve, 1500))]);
        if (mode === 'avatar') await avatar(other);
        else if (mode === 'bookmarks') await bookmarks(other);
        else if (mode === 'mam') await mam(other);
        else throw new Error(`unknown mode ${mode}`);
        await xmpp.stop();
        clearTimeout(give_up);
        report('done', true);
    } catch (err) {
        report('failed', String(err.stack ?? err));
        process.exit(3);
    }
});

xmpp.start().catch((err) => {
    report('start-failed', String(err));
    process.exit(1);
});
