// Build the widget into dist/ (served by xmppd at /chat/): one classic script bundling the
// ES modules of src/ with Strophe.js from node_modules, and the demo page.
//
//   npm ci && node build.mjs
//
// No network at run time: everything the page loads comes from dist/.

import { build } from 'esbuild';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
    entryPoints: [join(here, 'src', 'main.js')],
    outfile: join(dist, 'xmppd-chat.js'),
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['es2020'],
    minify: true,
    sourcemap: true,
    legalComments: 'eof',
    loader: { '.css': 'text' },
    logLevel: 'warning',
});
await copyFile(join(here, 'index.html'), join(dist, 'index.html'));
// ./run compares source mtimes with this stamp to rebuild a stale dist/.
await writeFile(join(dist, '.build-stamp'), `${new Date().toISOString()}\n`);
console.log(`built ${dist}`);
