// Entry point of dist/xmppd-chat.js: mounts a widget on every [data-xmppd-chat] element.
// A page may include the script more than once; each container is mounted only once.

import { mount, mountAll } from './widget.js';

const VERSION = '0.1.0';

if (!window.XmppdChat) {
    window.XmppdChat = { mount, mountAll, version: VERSION };
    if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', mountAll, { once: true });
    } else {
        mountAll();
    }
}
