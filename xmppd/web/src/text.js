// Text handling for presentation. Nothing a peer sends is ever parsed as HTML: the widget
// puts text into the page with textContent only. Old forum code still emits HTML entities
// ("&amp;", "&#39;") in message bodies, so those are decoded exactly once, in one pass, so
// that "&amp;lt;" shows as "&lt;" and never turns into markup. Nicks are never decoded: a
// nick is an identity, and "&#65;dmin" must not show as "Admin", nor "&#8238;" smuggle in
// the bidi override the server refuses in nicks.

const NAMED = {
    amp: '&',
    lt: '<',
    gt: '>',
    quot: '"',
    apos: "'",
    nbsp: '\u00a0',
    hellip: '\u2026',
    mdash: '\u2014',
    ndash: '\u2013',
    laquo: '\u00ab',
    raquo: '\u00bb',
    lsquo: '\u2018',
    rsquo: '\u2019',
    ldquo: '\u201c',
    rdquo: '\u201d',
    copy: '\u00a9',
    reg: '\u00ae',
    trade: '\u2122',
    euro: '\u20ac',
    deg: '\u00b0',
    middot: '\u00b7',
    times: '\u00d7',
};

const ENTITY = /&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]{2,8}));/g;

function fromCodePoint(cp) {
    // Control characters, surrogates and out-of-range values stay as written.
    if (cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return null;
    if (cp < 0x20 && cp !== 0x09 && cp !== 0x0a && cp !== 0x0d) return null;
    return String.fromCodePoint(cp);
}

/** Decode legacy HTML entities once (unknown ones are left as written). */
export function decodeEntities(text) {
    if (typeof text !== 'string' || text.indexOf('&') === -1) return text ?? '';
    return text.replace(ENTITY, (whole, dec, hex, name) => {
        if (dec !== undefined) return fromCodePoint(parseInt(dec, 10)) ?? whole;
        if (hex !== undefined) return fromCodePoint(parseInt(hex, 16)) ?? whole;
        const ch = NAMED[name.toLowerCase()];
        return ch === undefined ? whole : ch;
    });
}

// Controls, format characters (zero-width, bidi overrides and isolates) and line/paragraph
// separators: invisible, or able to reorder what is around them.
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/**
 * A nick as it is shown: exactly the characters it has (no entity decoding), except that
 * any invisible or bidi-control character (which the server refuses in nicks, so only an
 * old archive row or another server could carry one) is shown as its code, e.g. <U+202E>.
 */
export function nickText(nick) {
    if (typeof nick !== 'string') return '';
    const code = (ch) => ch.codePointAt(0).toString(16).toUpperCase().padStart(4, '0');
    return nick.replace(INVISIBLE, (ch) => `<U+${code(ch)}>`);
}

/** Parse an XEP-0082 / ISO 8601 timestamp; null when missing or unparseable. */
export function parseStamp(value) {
    if (typeof value === 'number' && Number.isFinite(value)) {
        // Unix seconds (or milliseconds when clearly too large for seconds).
        return new Date(value > 1e11 ? value : value * 1000);
    }
    if (typeof value !== 'string' || value === '') return null;
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? null : d;
}

/** XEP-0082 DateTime in UTC, as MUC's <history since=…> wants it. */
export function formatStamp(date) {
    return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
