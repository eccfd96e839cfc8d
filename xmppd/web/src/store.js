// The messages the page shows, each exactly once.
//
// The same room message can reach the page up to three times: in the history the forum
// embedded (or /chat/history returned), live, and again in the join history after a
// reconnect. XEP-0359 <stanza-id by=room> identifies it across all three. Where one copy has
// no stanza-id (old archive rows, other servers), the fallback key is sender + text + the
// timestamp to the second, as the seed's widget did.

/** The fallback identity of a message. */
export function fingerprint(msg) {
    const seconds = Math.floor(msg.time.getTime() / 1000);
    return `${msg.nick}\u0000${msg.text}\u0000${seconds}`;
}

export class MessageStore {
    /** @param {number} limit - messages kept (the oldest are dropped) */
    constructor(limit = 500) {
        this.limit = limit;
        this.messages = []; // oldest first
        this._ids = new Set();
        this._prints = new Map(); // fingerprint -> number of stored copies without stanza-id
        this._allPrints = new Set();
        this.dropped = false;
    }

    /**
     * Add a message {id, nick, text, time}; returns its index in time order, or -1 when the
     * page already shows it.
     */
    add(msg) {
        this.dropped = false;
        const fp = fingerprint(msg);
        if (msg.id) {
            if (this._ids.has(msg.id)) return -1;
            const withoutId = this._prints.get(fp) ?? 0;
            if (withoutId > 0) {
                // The copy we already have had no id: this is it; remember the id from now on.
                this._prints.set(fp, withoutId - 1);
                this._ids.add(msg.id);
                return -1;
            }
            this._ids.add(msg.id);
        } else {
            if (this._allPrints.has(fp)) return -1;
            this._prints.set(fp, (this._prints.get(fp) ?? 0) + 1);
        }
        this._allPrints.add(fp);
        let i = this.messages.length;
        while (i > 0 && this.messages[i - 1].time > msg.time) i -= 1;
        this.messages.splice(i, 0, msg);
        if (this.messages.length > this.limit) {
            this.messages.shift();
            this.dropped = true; // the caller removes the oldest line from the page
            i -= 1;
        }
        return i;
    }

    /**
     * Forget the message with this stanza-id (retracted: XEP-0424/0425); returns the index it
     * had, or -1. Its id stays known, so a later copy of it is not shown again.
     */
    remove(id) {
        const index = this.messages.findIndex((m) => m.id === id);
        this._ids.add(id);
        if (index < 0) return -1;
        const [gone] = this.messages.splice(index, 1);
        this._allPrints.delete(fingerprint(gone));
        return index;
    }

    /** Timestamp of the newest message shown (null when none). */
    newest() {
        return this.messages.length ? this.messages[this.messages.length - 1].time : null;
    }

    get size() {
        return this.messages.length;
    }
}
