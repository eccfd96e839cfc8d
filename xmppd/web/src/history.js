// Recent history before any XMPP traffic: embedded into the page by the forum's PHP
// (<script type="application/json" class="xmppd-chat-history">), or one GET of
// /chat/history. Either way the JSON is xmppd's /chat/history answer.

import { parseStamp } from './text.js';

/** Turn one history entry into the store's message shape; null if unusable. */
export function toMessage(item) {
    if (!item || typeof item !== 'object') return null;
    const time = parseStamp(item.timestamp ?? item.stamp ?? item.ts ?? item.time);
    const text = item.text ?? item.body;
    if (!time || typeof text !== 'string') return null;
    const nick = typeof item.nick === 'string' ? item.nick : '';
    const id = item.stanza_id ?? item.stanzaId ?? item.id ?? null;
    const oob = typeof item.oob === 'string' ? item.oob : null; // XEP-0066 URL (media.js)
    return { id: id ? String(id) : null, nick, text, oob, time };
}

/** Messages (oldest first) and, when the server said, the room JID, from the JSON. */
export function parseHistory(data) {
    const list = Array.isArray(data) ? data : (data?.messages ?? []);
    const messages = [];
    for (const item of Array.isArray(list) ? list : []) {
        const msg = toMessage(item);
        if (msg) messages.push(msg);
    }
    messages.sort((a, b) => a.time - b.time);
    const room = !Array.isArray(data) && typeof data?.room === 'string' ? data.room : null;
    return { room, messages };
}

/** The JSON the forum embedded inside the container, or null. */
export function embeddedHistory(container) {
    const el = container.querySelector('script.xmppd-chat-history[type="application/json"]');
    if (!el) return null;
    try {
        return JSON.parse(el.textContent);
    } catch {
        return null;
    }
}

/** One GET of the history URL; null on any failure (the join history covers it). */
export async function fetchHistory(url, { room, limit, timeoutMs = 5000 } = {}) {
    const u = new URL(url, document.baseURI);
    // xmppd's /chat/history names a room by its localpart.
    if (room) u.searchParams.set('room', room.split('@')[0]);
    if (limit) u.searchParams.set('limit', String(limit));
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
        const res = await fetch(u, {
            signal: abort.signal,
            credentials: 'omit',
            headers: { Accept: 'application/json' },
        });
        if (!res.ok) return null;
        return await res.json();
    } catch {
        return null;
    } finally {
        clearTimeout(timer);
    }
}
