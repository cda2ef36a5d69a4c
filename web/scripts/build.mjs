// Builds web/dist/: the page (src/) as it is, plus Chart.js's UMD file from node_modules,
// so that the dashboard works offline and under creditd's strict Content-Security-Policy.
// No bundler: the page is plain ES modules.
import { cpSync, mkdirSync, readdirSync, rmSync, copyFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const dist = join(root, 'dist');

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'vendor'), { recursive: true });
for (const name of readdirSync(src)) cpSync(join(src, name), join(dist, name), { recursive: true });

const chartPkg = join(root, 'node_modules', 'chart.js');
const umd = join(chartPkg, 'dist', 'chart.umd.min.js');
if (!existsSync(umd)) {
  console.error(`web build: ${umd} is missing; run npm ci in web/`);
  process.exit(1);
}
copyFileSync(umd, join(dist, 'vendor', 'chart.umd.min.js'));
copyFileSync(join(chartPkg, 'LICENSE.md'), join(dist, 'vendor', 'chart.js-LICENSE.md'));
console.log(`web build: wrote ${dist}`);
