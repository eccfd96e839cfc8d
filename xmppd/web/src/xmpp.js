// The XMPP side of the widget: one logical session that survives sleep and network loss.
//
// Why it is shaped like this (the seed's widget showed every message several times after a
// wake-up because its reconnect registered its handlers again):
// - Every connection attempt gets a fresh Strophe.Connection and a generation number. Stanza
//   handlers are added once, to that connection object, before it connects, and each checks
//   its generation, so a late event of an abandoned connection is dropped (and its handler
//   removed) instead of being delivered twice.
// - Window listeners (online/offline/visibilitychange) and the wake-up timer are installed
//   once, by the constructor, and only ever call reconnectSoon()/checkAlive().
// - WebSocket is preferred, with XEP-0198 (Strophe's engine) so a short loss resumes the
//   same session; BOSH is the fallback, with Strophe's keepalive so a reload within the
//   server's inactivity window restores the same session. When nothing could be resumed the
//   room is joined again with <history since=newest shown/> and the store drops what the
//   page already has (by XEP-0359 stanza-id).

import { $iq, $msg, $pres, Strophe } from 'strophe.js';
import { formatStamp, parseStamp } from './text.js';

const NS_MUC = 'http://jabber.org/protocol/muc';
const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
const NS_SID = 'urn:xmpp:sid:0';
const NS_DELAY = 'urn:xmpp:delay';
const NS_PING = 'urn:xmpp:ping';
const NS_OOB = 'jabber:x:oob';
const NS_RETRACT = 'urn:xmpp:message-retract:1';
const NS_FASTEN = 'urn:xmpp:fasten:0';

// Strophe logs every step at debug level otherwise; a forum page wants its console quiet.
Strophe.setLogLevel(Strophe.LogLevel.WARN);

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const PING_TIMEOUT_MS = 8000;
const WAKE_CHECK_MS = 5000;
const IDLE_PING_MS = 60000;
const JOIN_TIMEOUT_MS = 6000;
const JOIN_ATTEMPTS = 3;

function bare(jid) {
    return Strophe.getBareJidFromJid(jid) ?? '';
}

/**
 * The stanza-id a retraction names, or null: XEP-0424's <retract/> (an author's, which
 * the room relays only after checking the author, or a moderator's announcement), or
 * XEP-0425 0.2's <apply-to/>, honoured only from the room itself (§5: anything else could
 * be an occupant's forgery).
 */
function retractedId(stanza, fromRoom) {
    const retract = child(stanza, 'retract', NS_RETRACT);
    if (retract) return retract.getAttribute('id');
    const applyTo = child(stanza, 'apply-to', NS_FASTEN);
    return applyTo && fromRoom ? applyTo.getAttribute('id') : null;
}

function child(el, name, ns) {
    for (const c of el.children) {
        if (c.localName === name && (c.namespaceURI === ns || c.getAttribute('xmlns') === ns)) {
            return c;
        }
    }
    return null;
}

/** The websocket URL for a possibly relative path: http(s) → ws(s). */
export function websocketUrl(value) {
    if (!value) return null;
    const u = new URL(value, document.baseURI);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    if (u.protocol === 'https:') u.protocol = 'wss:';
    return u.href;
}

export class ChatConnection {
    /**
     * @param {object} opts
     * @param {string|null} opts.websocket - RFC 7395 endpoint
     * @param {string|null} opts.bosh - XEP-0206 endpoint
     * @param {string} opts.room - bare room JID
     * @param {object} ui - callbacks: state(name, detail), message(msg), occupant(nick, present, info),
     *     occupantsReset(), joined(), error(text)
     */
    constructor(opts, ui) {
        this.opts = opts;
        this.ui = ui;
        this.room = opts.room;
        this.gen = 0;
        this.conn = null;
        this.jid = null;
        this.password = null;
        this.nick = null;
        this.since = null; // () => Date|null, newest message shown
        this.useWebsocket = !!opts.websocket && typeof WebSocket !== 'undefined';
        this.everConnected = false;
        this.failures = 0;
        this.retryTimer = null;
        this.joinTimer = null;
        this.stopped = true;
        this.online = false;
        this.joined = false;
        this.how = ''; // transport, and whether the session was resumed or restored
        this._lastTick = Date.now();
        this._lastTraffic = Date.now();
        this._installWindowListeners();
    }

    // -- lifecycle --------------------------------------------------------------------

    /** Log in and join; later losses reconnect by themselves until stop(). */
    start({ jid, password, nick, since }) {
        this.jid = jid;
        this.password = password;
        this.nick = nick;
        this.since = since;
        this.stopped = false;
        this.failures = 0;
        this._connect(true);
    }

    /** Leave the room and end the session (page logout). */
    stop() {
        this.stopped = true;
        clearTimeout(this.retryTimer);
        const conn = this.conn;
        this.gen += 1;
        this.conn = null;
        if (conn && this.online) {
            try {
                conn.disconnect('logout');
            } catch {
                /* already gone */
            }
        }
        this.online = false;
        this.joined = false;
        this.ui.state('offline', 'Logged out');
    }

    sendGroupchat(text) {
        if (!this.conn || !this.online || !this.joined) return false;
        this.conn.send($msg({ to: this.room, type: 'groupchat' }).c('body').t(text));
        return true;
    }

    // -- connecting -------------------------------------------------------------------

    _newConnection() {
        const ws = this.useWebsocket ? websocketUrl(this.opts.websocket) : null;
        if (ws) {
            return new Strophe.Connection(ws, {
                protocol: 'ws',
                enableStreamManagement: true,
                streamManagement: { requestResume: true, maxUnacked: 5 },
            });
        }
        const url = new URL(this.opts.bosh, document.baseURI).href;
        return new Strophe.Connection(url, { keepalive: true });
    }

    _connect(mayRestore) {
        clearTimeout(this.retryTimer);
        if (this.stopped) return;
        this._abandon();
        const gen = this.gen;
        const conn = this._newConnection();
        this.conn = conn;
        this._addHandlers(conn, gen);
        const cb = (status, condition) => this._onStatus(gen, conn, status, condition);
        this.ui.state(this.everConnected ? 'reconnecting' : 'connecting', this._transportName());
        if (mayRestore && !this.useWebsocket) {
            try {
                conn.restore(this.jid, cb);
                return;
            } catch {
                /* nothing cached: log in */
            }
        }
        conn.connect(this.jid, this.password, cb);
    }

    /**
     * Drop the current connection without a </close> (so XEP-0198 can still resume it)
     * and make sure nothing it still receives reaches the page: the generation moves on
     * first, so its status callback and handlers see they are stale.
     */
    _abandon() {
        this.gen += 1;
        const old = this.conn;
        this.conn = null;
        this.online = false;
        this.joined = false;
        if (!old) return;
        try {
            if (old._proto && typeof old._proto._abortAllRequests === 'function') {
                old._proto._abortAllRequests();
            }
            old._doDisconnect();
        } catch {
            /* best effort: it is unreachable from now on anyway */
        }
    }

    _transportName() {
        return this.useWebsocket ? 'WebSocket' : 'BOSH';
    }

    _onStatus(gen, conn, status, condition) {
        if (gen !== this.gen) return; // an abandoned connection
        const S = Strophe.Status;
        switch (status) {
            case S.CONNECTED:
            case S.ATTACHED: {
                // A session resumed by an earlier page (reload) left this page without the
                // occupant list: only a resumption within this page may skip the join.
                const samePage = this.everConnected;
                this.online = true;
                this.everConnected = true;
                this.failures = 0;
                this._lastTraffic = Date.now();
                const resumed = typeof conn.hasResumed === 'function' && conn.hasResumed();
                this.how = this._transportName();
                if (status === S.ATTACHED) this.how += ', session restored';
                else if (resumed) this.how += ', resumed';
                this.ui.state('joining', this.how);
                if (samePage && resumed) {
                    // XEP-0198 resumed: still in the room, the server replays what we missed.
                    this.joined = true;
                    this.ui.state('online', this.how);
                } else {
                    this._join(conn);
                }
                break;
            }
            case S.AUTHFAIL:
                this.stopped = true;
                this.online = false;
                this.ui.state('auth-failed', 'Login refused');
                break;
            case S.CONNFAIL:
            case S.DISCONNECTED:
            case S.ERROR:
            case S.CONNTIMEOUT:
                if (this.stopped) return;
                this._lost(condition);
                break;
            default:
                break;
        }
    }

    _lost(condition) {
        const wasOnline = this.online;
        this._abandon(); // whatever the old connection still says is ignored from now on
        const gen = this.gen;
        if (!this.everConnected && this.useWebsocket && this.opts.bosh && !wasOnline) {
            // WebSocket never worked here (proxy, firewall): fall back to BOSH at once.
            this.useWebsocket = false;
            this._connect(true);
            return;
        }
        this.failures += 1;
        const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.failures - 1));
        const delay = navigator.onLine === false ? BACKOFF_MAX_MS : base / 2 + Math.random() * (base / 2);
        this.ui.state('reconnecting', condition ? `lost (${condition})` : 'lost');
        this.retryTimer = setTimeout(() => {
            if (gen === this.gen) this._connect(true);
        }, delay);
    }

    /** Reconnect now (network back, tab visible again) unless a connection is up. */
    reconnectSoon() {
        if (this.stopped || this.online) return;
        this.failures = 0;
        this._connect(true);
    }

    /** After sleep or a network change a socket can be dead without knowing: ping it. */
    checkAlive() {
        if (this.stopped) return;
        if (!this.online || !this.conn) {
            this.reconnectSoon();
            return;
        }
        const gen = this.gen;
        const conn = this.conn;
        conn.sendIQ(
            $iq({ type: 'get', to: Strophe.getDomainFromJid(this.jid) }).c('ping', { xmlns: NS_PING }),
            () => {
                this._lastTraffic = Date.now();
                if (gen === this.gen && this.joined) this.ui.state('online', this.how);
            },
            (stanza) => {
                if (gen !== this.gen) return;
                if (stanza) return; // an error reply still proves the stream is alive
                this._lost('no answer to ping');
            },
            PING_TIMEOUT_MS,
        );
    }

    _installWindowListeners() {
        // Installed exactly once per widget; they never add stanza handlers.
        window.addEventListener('online', () => this.checkAlive());
        window.addEventListener('offline', () => {
            // The socket may survive a short loss: keep it, say so, and ping when back.
            if (!this.stopped) this.ui.state('reconnecting', 'network offline');
        });
        document.addEventListener('visibilitychange', () => {
            if (document.visibilityState === 'visible') this.checkAlive();
        });
        setInterval(() => {
            const now = Date.now();
            const slept = now - this._lastTick > 3 * WAKE_CHECK_MS;
            this._lastTick = now;
            if (slept || (this.online && now - this._lastTraffic > IDLE_PING_MS)) {
                this._lastTraffic = now;
                this.checkAlive();
            }
        }, WAKE_CHECK_MS);
    }

    // -- the room ---------------------------------------------------------------------

    _join(conn, attempt = 1) {
        // A BOSH response can be lost on the wire (a reload aborts the held request the
        // server answers on): without our self-presence the join is repeated, which the
        // room answers as a full re-sync; after a few tries the connection is renewed.
        const gen = this.gen;
        clearTimeout(this.joinTimer);
        this.joinTimer = setTimeout(() => {
            if (gen !== this.gen || this.joined || this.stopped) return;
            if (attempt < JOIN_ATTEMPTS) this._join(conn, attempt + 1);
            else this._lost('no answer from the room');
        }, JOIN_TIMEOUT_MS * attempt);
        if (attempt > 1) {
            this._sendJoin(conn);
            return;
        }
        this.ui.occupantsReset();
        conn.send($pres());
        this._sendJoin(conn);
    }

    _sendJoin(conn) {
        const history = {};
        const newest = this.since ? this.since() : null;
        if (newest) {
            // One second earlier: a message stamped in the same second is fetched again and
            // dropped by its stanza-id rather than missed.
            history.since = formatStamp(new Date(newest.getTime() - 1000));
        } else {
            history.maxstanzas = '50';
        }
        conn.send(
            $pres({ to: `${this.room}/${this.nick}` })
                .c('x', { xmlns: NS_MUC })
                .c('history', history),
        );
    }

    _addHandlers(conn, gen) {
        const live = () => gen === this.gen;
        conn.addHandler(
            (stanza) => {
                if (!live()) return false;
                this._lastTraffic = Date.now();
                this._onMessage(stanza);
                return true;
            },
            null,
            'message',
        );
        conn.addHandler(
            (stanza) => {
                if (!live()) return false;
                this._lastTraffic = Date.now();
                this._onPresence(stanza);
                return true;
            },
            null,
            'presence',
        );
    }

    _onMessage(stanza) {
        const from = stanza.getAttribute('from') ?? '';
        if (bare(from) !== this.room) return;
        const type = stanza.getAttribute('type');
        if (type === 'error') {
            this.ui.error('The room refused a message.');
            return;
        }
        if (type !== 'groupchat') return;
        const retracted = retractedId(stanza, from === this.room);
        if (retracted !== null) {
            // a retraction is no chat line (its body is a fallback): the message goes
            this.ui.retract(retracted);
            return;
        }
        const body = child(stanza, 'body', 'jabber:client') ?? stanza.getElementsByTagName('body')[0];
        if (!body) return; // subject changes, chat states
        let id = null;
        for (const sid of stanza.getElementsByTagNameNS(NS_SID, 'stanza-id')) {
            if (sid.getAttribute('by') === this.room) id = sid.getAttribute('id');
        }
        if (!id) {
            // Strophe may leave the namespace as an attribute only.
            for (const sid of stanza.getElementsByTagName('stanza-id')) {
                if (sid.getAttribute('xmlns') === NS_SID && sid.getAttribute('by') === this.room) {
                    id = sid.getAttribute('id');
                }
            }
        }
        let time = null;
        for (const d of stanza.getElementsByTagName('delay')) {
            if (d.namespaceURI === NS_DELAY || d.getAttribute('xmlns') === NS_DELAY) {
                time = parseStamp(d.getAttribute('stamp'));
            }
        }
        const nick = Strophe.getResourceFromJid(from) ?? '';
        // XEP-0066: the URL a client attaches to a shared file (media.js decides on it).
        const oob = stanza.getElementsByTagNameNS(NS_OOB, 'x')[0]?.getElementsByTagNameNS(NS_OOB, 'url')[0];
        const text = body.textContent ?? '';
        this.ui.message({ id, nick, text, oob: oob?.textContent ?? null, time: time ?? new Date() });
    }

    _onPresence(stanza) {
        const from = stanza.getAttribute('from') ?? '';
        if (bare(from) !== this.room) return;
        const nick = Strophe.getResourceFromJid(from) ?? '';
        const type = stanza.getAttribute('type');
        const x = child(stanza, 'x', NS_MUC_USER);
        const codes = x ? [...x.getElementsByTagName('status')].map((s) => s.getAttribute('code')) : [];
        if (type === 'error') {
            if (!this.joined) clearTimeout(this.joinTimer); // refused: asking again won't help
            const err = stanza.getElementsByTagName('error')[0];
            const cond = err?.firstElementChild?.localName ?? 'error';
            const text = err?.getElementsByTagName('text')[0]?.textContent;
            if (!this.joined) {
                this.ui.state('error', `Could not join the room: ${text || cond}`);
            }
            return;
        }
        if (type === 'unavailable') {
            this.ui.occupant(nick, false);
            if (codes.includes('110')) {
                this.joined = false;
                if (!this.stopped) this._lost('removed from the room');
            }
            return;
        }
        const item = x?.getElementsByTagName('item')[0];
        this.ui.occupant(nick, true, {
            role: item?.getAttribute('role') ?? '',
            self: codes.includes('110'),
        });
        if (codes.includes('110') && !this.joined) {
            this.joined = true;
            if (codes.includes('210')) this.nick = nick;
            this.ui.state('online', this.how);
        }
    }
}
