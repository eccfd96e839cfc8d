// Pictures shared with XEP-0363 HTTP upload, and links. Pure (no DOM): the widget asks
// which URL, if any, a message's picture is at and builds the <img> itself, with the URL
// as an attribute only; nothing from a message is ever parsed as HTML.
//
// A picture is shown only when the message's body is exactly one URL (or its XEP-0066
// <x xmlns='jabber:x:oob'><url> is one) under this server's upload URL, in the shape xmppd
// hands out (<base>/upload/<24-character id>/<name>) and with a plain raster image's
// extension: xmppd serves those inline with their type (and everything with nosniff and a
// CSP sandbox), so the <img> shows exactly what was uploaded. Any other URL stays a link.

const IMAGE_PATH = /^[A-Za-z0-9_-]{24}\/[^/?#]+\.(?:png|jpe?g|gif|webp|avif)$/i;
const URL_IN_TEXT = /\bhttps?:\/\/[^\s<>"'`]+/gi;
// Punctuation that ends a sentence rather than the URL it follows.
const TRAILING = /[.,;:!?)\]}]+$/;

/**
 * The upload base ("…/upload/") the widget trusts for pictures: the container's
 * data-upload, else beside the BOSH or WebSocket endpoint (xmppd serves /upload/ on the
 * same port and prefix). Null when neither is known.
 */
export function uploadBase({ upload, bosh, websocket }, baseURI) {
    try {
        if (upload) {
            const u = new URL(upload, baseURI);
            if (!u.pathname.endsWith('/')) u.pathname += '/';
            return /^https?:$/.test(u.protocol) ? u.href : null;
        }
        const endpoint = bosh || websocket;
        if (!endpoint) return null;
        const u = new URL(endpoint, baseURI);
        if (u.protocol === 'ws:') u.protocol = 'http:';
        else if (u.protocol === 'wss:') u.protocol = 'https:';
        if (!/^https?:$/.test(u.protocol)) return null;
        return new URL('upload/', u).href;
    } catch {
        return null;
    }
}

/** The picture URL of a message (body, or its OOB URL), or null. */
export function pictureUrl(text, oob, base) {
    if (!base) return null;
    for (const candidate of [oob, text]) {
        if (typeof candidate !== 'string') continue;
        const raw = candidate.trim();
        if (!raw || /\s/.test(raw)) continue;
        let u;
        try {
            u = new URL(raw);
        } catch {
            continue;
        }
        if (u.username || u.password || u.search || u.hash) continue;
        if (!u.href.startsWith(base)) continue;
        if (IMAGE_PATH.test(u.href.slice(base.length))) return u.href;
    }
    return null;
}

/** The message text as pieces: {text} and {href, text} for each http(s) URL in it. */
export function linkParts(text) {
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(URL_IN_TEXT)) {
        const url = match[0].replace(TRAILING, '');
        let href;
        try {
            href = new URL(url).href;
        } catch {
            continue;
        }
        if (match.index > last) parts.push({ text: text.slice(last, match.index) });
        parts.push({ href, text: url });
        last = match.index + url.length;
    }
    if (last < text.length) parts.push({ text: text.slice(last) });
    return parts;
}

/** The file name shown as the picture's alt text (decoded, or the raw last part). */
export function pictureName(href) {
    const last = href.split('/').pop() ?? '';
    try {
        return decodeURIComponent(last);
    } catch {
        return last;
    }
}
