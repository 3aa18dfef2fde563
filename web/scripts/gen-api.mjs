// Regenerates src/api/schema.d.ts, the dashboard's API types, from the OpenAPI document of a
// real flotilla-server (built from this checkout: `cargo build --workspace --bins` first).
//
//   npm run gen:api            write src/api/schema.d.ts
//   npm run gen:api -- --check fail if it differs from what the server publishes

import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './server.mjs';
import { generate } from './openapi-types.mjs';

const target = join(dirname(fileURLToPath(import.meta.url)), '../src/api/schema.d.ts');
const check = process.argv.includes('--check');

const server = await startServer();
try {
  const doc = await (await fetch(`${server.url}/api/openapi.json`)).json();
  const text = await generate(doc);
  if (check) {
    const current = await readFile(target, 'utf8').catch(() => '');
    if (current !== text) {
      console.error(`${target} is out of date: run npm run gen:api and commit it`);
      process.exitCode = 1;
    } else {
      console.log(`${target} matches the server's OpenAPI document`);
    }
  } else {
    await writeFile(target, text);
    console.log(`wrote ${target}`);
  }
} finally {
  await server.stop();
}
