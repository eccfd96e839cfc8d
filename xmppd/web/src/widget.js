// The chat widget: builds its DOM inside a container, shows the recent history first, then
// connects, joins the room and keeps the page live. All peer text goes in via textContent;
// a picture uploaded to this server (media.js) becomes an <img> whose src is its URL.

import { Strophe } from 'strophe.js';
import css from './widget.css';
import { embeddedHistory, fetchHistory, parseHistory } from './history.js';
import { linkParts, pictureName, pictureUrl, uploadBase } from './media.js';
import { MessageStore } from './store.js';
import { decodeEntities, nickText } from './text.js';
import { ChatConnection } from './xmpp.js';

const STATE_TEXT = {
    offline: 'Not connected',
    connecting: 'Connecting…',
    joining: 'Joining the room…',
    online: 'Connected',
    reconnecting: 'Reconnecting…',
    'auth-failed': 'Login refused',
    error: 'Error',
};

let counter = 0;

function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === true) node.setAttribute(k, '');
        else if (v !== false && v != null) node.setAttribute(k, String(v));
    }
    if (text != null) node.textContent = text;
    return node;
}

function injectStyle() {
    if (document.getElementById('xmppd-chat-style')) return;
    const style = el('style', { id: 'xmppd-chat-style' });
    style.textContent = css;
    document.head.appendChild(style);
}

function timeLabel(date) {
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Read the container's data attributes (see README "Embedding the chat"). */
export function readOptions(container) {
    const d = container.dataset;
    return {
        websocket: d.websocket || null,
        bosh: d.bosh || null,
        upload: d.upload || null,
        history: d.history || null,
        historyLimit: parseInt(d.historyLimit || '50', 10) || 50,
        room: d.room || null,
        domain: d.domain || null,
        username: d.username || '',
        sessionId: d.sessionId || '',
        title: d.title || 'Chat',
    };
}

export class ChatWidget {
    constructor(container, options = readOptions(container)) {
        this.container = container;
        this.options = options;
        this.store = new MessageStore(500);
        this.occupants = new Map();
        this.id = `xc${++counter}`;
        this.uploadBase = uploadBase(options, document.baseURI);
        this._build();
        this.xmpp = null;
    }

    _build() {
        injectStyle();
        const id = this.id;
        const root = el('section', { class: 'xc', 'aria-labelledby': `${id}-title`, 'data-state': 'offline' });
        const head = el('div', { class: 'xc-head' });
        head.append(
            el('h2', { class: 'xc-title', id: `${id}-title` }, this.options.title),
            (this.stateEl = el('span', { class: 'xc-state', role: 'status' }, STATE_TEXT.offline)),
        );
        const body = el('div', { class: 'xc-body' });
        this.log = el('ol', {
            class: 'xc-log',
            role: 'log',
            'aria-live': 'polite',
            'aria-relevant': 'additions',
            'aria-label': 'Messages',
            tabindex: 0,
        });
        const occ = el('aside', { class: 'xc-occupants', 'aria-labelledby': `${id}-occ` });
        const occHead = el('h3', { id: `${id}-occ` });
        occHead.append('In the room (', (this.occCount = el('span', {}, '0')), ')');
        this.occList = el('ul');
        occ.append(occHead, this.occList);
        body.append(this.log, occ);

        this.notice = el('p', { class: 'xc-notice', role: 'alert' });

        this.sendForm = el('form', { class: 'xc-form xc-send', hidden: true });
        this.input = el('input', {
            id: `${id}-msg`,
            type: 'text',
            autocomplete: 'off',
            maxlength: 4000,
            enterkeyhint: 'send',
        });
        this.sendButton = el('button', { type: 'submit' }, 'Send');
        this.sendForm.append(el('label', { for: `${id}-msg` }, 'Message'), this.input, this.sendButton);
        this.sendForm.addEventListener('submit', (ev) => {
            ev.preventDefault();
            this._send();
        });

        this.loginForm = el('form', { class: 'xc-form xc-login', hidden: true, 'aria-label': 'Log in to the chat' });
        const user = el('div', { class: 'xc-field' });
        this.userInput = el('input', { id: `${id}-user`, name: 'username', autocomplete: 'username', required: true });
        user.append(el('label', { for: `${id}-user` }, 'Username'), this.userInput);
        const pass = el('div', { class: 'xc-field' });
        this.passInput = el('input', {
            id: `${id}-pass`,
            name: 'password',
            type: 'password',
            autocomplete: 'current-password',
            required: true,
        });
        pass.append(el('label', { for: `${id}-pass` }, 'Password'), this.passInput);
        this.loginForm.append(user, pass, el('button', { type: 'submit' }, 'Log in'));
        this.loginForm.addEventListener('submit', (ev) => {
            ev.preventDefault();
            this._login(this.userInput.value.trim(), this.passInput.value);
        });

        root.append(head, body, this.notice, this.sendForm, this.loginForm);
        this.root = root;
        // Keep the forum's embedded history element (read below), replace anything else.
        const embedded = embeddedHistory(this.container);
        this.container.replaceChildren(root);
        this._embedded = embedded;
    }

    /** Show history, then connect (phpBB session) or offer the login form. */
    async start() {
        let data = this._embedded;
        if (!data && this.options.history) {
            this.setState('connecting', 'loading history');
            data = await fetchHistory(this.options.history, {
                room: this.options.room,
                limit: this.options.historyLimit,
            });
        }
        if (data) {
            const { room, messages } = parseHistory(data);
            if (!this.options.room && room) this.options.room = room;
            for (const msg of messages) this.addMessage(msg);
        }
        this.setState('offline');
        const domain = this._domain();
        if (!this.options.room) this.options.room = `sax@conference.${domain}`;
        this.xmpp = new ChatConnection(
            { websocket: this.options.websocket, bosh: this.options.bosh, room: this.options.room.toLowerCase() },
            {
                state: (s, detail) => this.setState(s, detail),
                message: (msg) => this.addMessage(msg),
                retract: (id) => this.removeMessage(id),
                occupant: (nick, present, info) => this._occupant(nick, present, info),
                occupantsReset: () => this._clearOccupants(),
                error: (text) => this._notice(text),
            },
        );
        if (this.options.username && this.options.sessionId) {
            const jid = `${Strophe.escapeNode(this.options.username)}@${domain}`;
            this._startXmpp(jid, this.options.sessionId, this.options.username);
        } else {
            this.loginForm.hidden = false;
        }
    }

    _domain() {
        if (this.options.domain) return this.options.domain;
        const room = this.options.room;
        if (room && room.includes('@')) return room.split('@')[1].replace(/^(conference|muc|chat)\./, '');
        return location.hostname || 'localhost';
    }

    _login(username, password) {
        if (!username || !password) return;
        const jid = username.includes('@') ? username : `${Strophe.escapeNode(username)}@${this._domain()}`;
        const nick = username.includes('@') ? username.split('@')[0] : username;
        this.loginForm.hidden = true;
        this._startXmpp(jid, password, nick);
        this.passInput.value = '';
    }

    _startXmpp(jid, password, nick) {
        this.sendForm.hidden = false;
        this.xmpp.start({ jid, password, nick, since: () => this.store.newest() });
    }

    _send() {
        const text = this.input.value;
        if (!text.trim()) return;
        if (this.xmpp && this.xmpp.sendGroupchat(text)) {
            this.input.value = '';
            this._notice('');
        } else {
            this._notice('Not connected yet: your message is kept in the box.');
        }
    }

    _notice(text) {
        this.notice.textContent = text;
    }

    setState(state, detail) {
        this.root.dataset.state = state;
        const text = STATE_TEXT[state] ?? state;
        this.stateEl.textContent = detail && state !== 'online' ? `${text} (${detail})` : text;
        this.stateEl.title = detail ?? '';
        const usable = state === 'online';
        this.sendButton.disabled = !usable;
        if (state === 'auth-failed') {
            if (this.options.username && this.options.sessionId) {
                this._notice('The chat could not log you in: reload the page or log in to the forum again.');
            } else {
                this._notice('Wrong username or password.');
                this.sendForm.hidden = true;
                this.loginForm.hidden = false;
            }
        }
    }

    /** Add a message unless the page already shows it. Only the body's legacy entities
     * are decoded; the nick is shown exactly as it is (see text.js). */
    addMessage(msg) {
        const clean = { ...msg, nick: nickText(msg.nick), text: decodeEntities(msg.text) };
        const index = this.store.add(clean);
        if (index < 0) return false;
        if (this.store.dropped && this.log.firstElementChild) this.log.firstElementChild.remove();
        const li = el('li', { class: 'xc-msg' });
        if (clean.id) li.dataset.stanzaId = clean.id;
        li.dataset.time = clean.time.toISOString();
        li.append(
            el('time', { class: 'xc-time', datetime: clean.time.toISOString() }, timeLabel(clean.time)),
            el('span', { class: 'xc-nick' }, clean.nick),
            ...this._content(clean),
        );
        const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
        const before = this.log.children[index] ?? null;
        this.log.insertBefore(li, before);
        if (atBottom) {
            this.log.scrollTop = this.log.scrollHeight;
            // A picture gets its height when it has loaded: keep the newest line in view.
            for (const img of li.querySelectorAll('img')) {
                img.addEventListener('load', () => (this.log.scrollTop = this.log.scrollHeight), { once: true });
            }
        }
        return true;
    }

    /** The message's text (links as links) and, for a picture uploaded here, the picture. */
    _content(msg) {
        const picture = pictureUrl(msg.text, msg.oob, this.uploadBase);
        const out = [];
        const text = picture && msg.text.trim() === picture ? '' : msg.text;
        if (text || !picture) {
            const span = el('span', { class: 'xc-text' });
            for (const part of linkParts(text)) {
                span.append(part.href ? this._link(part.href, part.text) : part.text);
            }
            out.push(span);
        }
        if (picture) {
            const link = this._link(picture);
            link.className = 'xc-media';
            link.append(
                el('img', {
                    class: 'xc-img',
                    src: picture,
                    alt: `Picture: ${pictureName(picture)}`,
                    loading: 'lazy',
                    decoding: 'async',
                    referrerpolicy: 'no-referrer',
                }),
            );
            out.push(link);
        }
        return out;
    }

    _link(href, text) {
        return el('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow ugc' }, text);
    }

    /** A retracted message (XEP-0424/0425) disappears from the page. */
    removeMessage(id) {
        if (this.store.remove(id) < 0) return false;
        for (const li of [...this.log.children]) {
            if (li.dataset.stanzaId === id) li.remove();
        }
        return true;
    }

    _clearOccupants() {
        this.occupants.clear();
        this.occList.replaceChildren();
        this.occCount.textContent = '0';
    }

    _occupant(nick, present, info = {}) {
        const shown = nickText(nick);
        const old = this.occupants.get(nick);
        if (!present) {
            if (old) old.remove();
            this.occupants.delete(nick);
        } else if (!old) {
            const li = el('li', { 'data-self': !!info.self }, shown);
            this.occupants.set(nick, li);
            const after = [...this.occupants.keys()]
                .filter((n) => n !== nick)
                .sort((a, b) => a.localeCompare(b))
                .find((n) => n.localeCompare(nick) > 0);
            this.occList.insertBefore(li, after ? this.occupants.get(after) : null);
        }
        this.occCount.textContent = String(this.occupants.size);
    }
}

/** Mount a widget on a container (once). */
export function mount(container, options) {
    if (container.__xmppdChat) return container.__xmppdChat;
    const widget = new ChatWidget(container, options);
    container.__xmppdChat = widget;
    widget.start();
    return widget;
}

export function mountAll() {
    for (const c of document.querySelectorAll('[data-xmppd-chat]')) mount(c);
}
