// Unit tests of the widget's pure modules (no DOM, no network): `node --test test/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parseHistory, toMessage } from '../src/history.js';
import { linkParts, pictureName, pictureUrl, uploadBase } from '../src/media.js';
import { fingerprint, MessageStore } from '../src/store.js';
import { decodeEntities, formatStamp, nickText, parseStamp } from '../src/text.js';

const at = (s) => new Date(`2026-11-28T10:00:${String(s).padStart(2, '0')}Z`);

test('entities are decoded exactly once; unknown and dangerous ones stay', () => {
    assert.equal(decodeEntities('A &amp; B'), 'A & B');
    assert.equal(decodeEntities('&amp;lt;b&amp;gt;'), '&lt;b&gt;');
    assert.equal(decodeEntities('&lt;script&gt;'), '<script>');
    assert.equal(decodeEntities('it&#39;s &#x263A; &quot;q&quot;'), 'it\'s \u263a "q"');
    assert.equal(decodeEntities('&bogus; &#0; &#xD800; &#1114112;'), '&bogus; &#0; &#xD800; &#1114112;');
    assert.equal(decodeEntities('no entities'), 'no entities');
    assert.equal(decodeEntities(undefined), '');
});

test('nicks are shown as written: no entity decoding, invisible characters made visible', () => {
    assert.equal(nickText('&#65;dmin'), '&#65;dmin');
    assert.equal(nickText('x&#8238;y &amp; &#x200B;'), 'x&#8238;y &amp; &#x200B;');
    assert.equal(nickText('Ad\u202emin'), 'Ad<U+202E>min');
    assert.equal(nickText('a\u200bb\u2066c\u0007'), 'a<U+200B>b<U+2066>c<U+0007>');
    assert.equal(nickText('J\u00fcrgen \u{1F389}'), 'J\u00fcrgen \u{1F389}');
    assert.equal(nickText(undefined), '');
});

test('timestamps: XEP-0082 in, whole seconds out', () => {
    assert.equal(parseStamp('2026-11-28T10:52:08.123Z').toISOString(), '2026-11-28T10:52:08.123Z');
    assert.equal(parseStamp('not a date'), null);
    assert.equal(parseStamp(''), null);
    assert.equal(parseStamp(1700000000).getTime(), 1700000000000);
    assert.equal(formatStamp(new Date('2026-11-28T10:52:08.123Z')), '2026-11-28T10:52:08Z');
});

test('history JSON from /chat/history, tolerant of missing pieces', () => {
    const { room, messages } = parseHistory({
        room: 'sax@conference.localhost',
        messages: [
            { stanza_id: 'b', nick: 'n', text: 'second', timestamp: '2026-11-28T10:00:02Z' },
            { stanza_id: 'a', nick: 'n', text: 'first', timestamp: '2026-11-28T10:00:01Z' },
            { stanza_id: 'c', nick: 'n', timestamp: '2026-11-28T10:00:03Z' }, // no text
            { stanza_id: 'd', nick: 'n', text: 'x', timestamp: 'garbage' },
            null,
        ],
    });
    assert.equal(room, 'sax@conference.localhost');
    assert.deepEqual(
        messages.map((m) => m.text),
        ['first', 'second'],
    );
    assert.deepEqual(parseHistory('nonsense').messages, []);
    assert.equal(toMessage({ text: 't', timestamp: '2026-11-28T10:00:01Z' }).id, null);
    assert.equal(toMessage({ text: 't', timestamp: '2026-11-28T10:00:01Z' }).oob, null);
    assert.equal(toMessage({ text: 't', oob: 'https://x/u', timestamp: '2026-11-28T10:00:01Z' }).oob, 'https://x/u');
    assert.equal(toMessage({ text: 't', oob: { evil: 1 }, timestamp: '2026-11-28T10:00:01Z' }).oob, null);
});

test('store: a stanza-id is shown once, whichever copy comes first', () => {
    const store = new MessageStore();
    assert.equal(store.add({ id: 'x1', nick: 'a', text: 'hi', time: at(1) }), 0);
    assert.equal(store.add({ id: 'x1', nick: 'a', text: 'hi', time: at(1) }), -1); // join history
    assert.equal(store.add({ id: 'x2', nick: 'a', text: 'hi', time: at(1) }), 1); // same words, new message
    assert.equal(store.size, 2);
});

test('store: without ids, sender + text + second decide', () => {
    const store = new MessageStore();
    assert.equal(store.add({ id: null, nick: 'a', text: 'hi', time: at(1) }), 0);
    // The live copy with its id is the same message: not shown again, id remembered.
    assert.equal(store.add({ id: 'x1', nick: 'a', text: 'hi', time: new Date(at(1).getTime() + 400) }), -1);
    assert.equal(store.add({ id: 'x1', nick: 'a', text: 'hi', time: at(1) }), -1);
    // A copy without id of something already shown.
    assert.equal(store.add({ id: null, nick: 'a', text: 'hi', time: at(1) }), -1);
    assert.equal(store.add({ id: null, nick: 'b', text: 'hi', time: at(1) }), 1);
    assert.equal(fingerprint({ nick: 'a', text: 'hi', time: at(1) }), fingerprint({ nick: 'a', text: 'hi', time: at(1) }));
});

test('store: kept in time order, newest() drives <history since>', () => {
    const store = new MessageStore();
    store.add({ id: '3', nick: 'a', text: 'c', time: at(3) });
    store.add({ id: '1', nick: 'a', text: 'a', time: at(1) });
    assert.equal(store.add({ id: '2', nick: 'a', text: 'b', time: at(2) }), 1);
    assert.deepEqual(
        store.messages.map((m) => m.text),
        ['a', 'b', 'c'],
    );
    assert.equal(store.newest().getTime(), at(3).getTime());
    assert.equal(new MessageStore().newest(), null);
});

test('store: bounded, and the dropped oldest line is reported', () => {
    const store = new MessageStore(2);
    store.add({ id: '1', nick: 'a', text: 'a', time: at(1) });
    store.add({ id: '2', nick: 'a', text: 'b', time: at(2) });
    assert.equal(store.dropped, false);
    assert.equal(store.add({ id: '3', nick: 'a', text: 'c', time: at(3) }), 1);
    assert.equal(store.dropped, true);
    assert.equal(store.add({ id: '1', nick: 'a', text: 'a', time: at(1) }), -1); // still known
});

// -- pictures uploaded with XEP-0363 (media.js) -------------------------------------------

const PAGE = 'https://forum.example.org/viewtopic.php?t=1';
const ID = 'AbCdEfGhIjKlMnOpQrStUv_-';

test('the upload base: data-upload, else beside BOSH or the WebSocket', () => {
    assert.equal(uploadBase({ upload: 'https://files.example.org' }, PAGE), 'https://files.example.org/');
    assert.equal(uploadBase({ bosh: '/xmpp/http-bind' }, PAGE), 'https://forum.example.org/xmpp/upload/');
    assert.equal(uploadBase({ websocket: 'wss://chat.example.org/xmpp-websocket' }, PAGE), 'https://chat.example.org/upload/');
    assert.equal(uploadBase({ websocket: 'ws://127.0.0.1:5280/xmpp-websocket' }, PAGE), 'http://127.0.0.1:5280/upload/');
    assert.equal(uploadBase({ upload: 'javascript:alert(1)' }, PAGE), null);
    assert.equal(uploadBase({}, PAGE), null);
});

test('only an uploaded raster image under the base is a picture', () => {
    const base = 'https://files.example.org/upload/';
    const url = `${base}${ID}/cat.png`;
    assert.equal(pictureUrl(url, null, base), url);
    assert.equal(pictureUrl(`  ${url}\n`, null, base), url);
    assert.equal(pictureUrl('look at this', url, base), url); // XEP-0066 oob
    assert.equal(pictureUrl(`${base}${ID}/photo.JPEG`, null, base), `${base}${ID}/photo.JPEG`);
    for (const other of [
        `${base}${ID}/page.html`,
        `${base}${ID}/drawing.svg`,
        `${base}${ID}/cat.png?x=1`,
        `${base}${ID}/cat.png#x`,
        `${base}short/cat.png`,
        `${base}${ID}/a/cat.png`,
        `https://evil.example/upload/${ID}/cat.png`,
        `https://files.example.org.evil.example/upload/${ID}/cat.png`,
        `https://user@files.example.org/upload/${ID}/cat.png`,
        `${url} and more text`,
        `javascript:alert(1)//${url}`,
        '<img src=x onerror=alert(1)>',
    ]) {
        assert.equal(pictureUrl(other, null, base), null, other);
    }
    assert.equal(pictureUrl(url, null, null), null);
});

test('links in text are split out; the rest stays text', () => {
    assert.deepEqual(linkParts('see https://example.org/a?b=1. ok'), [
        { text: 'see ' },
        { href: 'https://example.org/a?b=1', text: 'https://example.org/a?b=1' },
        { text: '. ok' },
    ]);
    assert.deepEqual(linkParts('javascript:alert(1) <b>x</b>'), [{ text: 'javascript:alert(1) <b>x</b>' }]);
    assert.deepEqual(linkParts(''), []);
    assert.equal(pictureName(`https://f/upload/${ID}/%C3%A9t%C3%A9.png`), 'été.png');
});

test('a retracted message leaves the store and is not shown again', () => {
    const store = new MessageStore();
    store.add({ id: 'a', nick: 'ann', text: 'keep', time: at(1) });
    store.add({ id: 'b', nick: 'ann', text: 'spam', time: at(2) });
    store.add({ id: 'c', nick: 'bob', text: 'later', time: at(3) });
    assert.equal(store.remove('b'), 1);
    assert.deepEqual(store.messages.map((m) => m.text), ['keep', 'later']);
    assert.equal(store.add({ id: 'b', nick: 'ann', text: 'spam', time: at(2) }), -1);
    assert.equal(store.remove('nope'), -1);
    assert.equal(store.remove('b'), -1);
    assert.equal(store.size, 2);
});
