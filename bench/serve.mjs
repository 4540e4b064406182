// `lookalike serve` for the browser benchmarks: starts the server on a
// free port and counts what it serves (bytes, requests, and bytes of
// scripts and wasm), from its LOOKALIKE_SERVE_LOG lines.
//
//   const { server, url, counter, served } = await serve(process.env.LOOKALIKE_BIN, siteDir);
import { spawn } from 'node:child_process';

export function serve(binary, site) {
  return new Promise((resolve, reject) => {
    const server = spawn(binary, ['serve', site, '--port', '0'], {
      stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LOOKALIKE_SERVE_LOG: '1' },
    });
    const counter = { bytes: 0, requests: 0, code: 0 };
    // Every response: [path, bytes], for benchmarks that sort them.
    const served = [];
    let buffered = '';
    server.stderr.on('data', (chunk) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        const hit = /^served (\S+) \d+ (\d+)$/.exec(line);
        if (hit) {
          counter.bytes += Number(hit[2]);
          counter.requests++;
          if (/\.(js|wasm)$/.test(hit[1])) counter.code += Number(hit[2]);
          served.push([hit[1], Number(hit[2])]);
        }
        const ready = /http:\/\/(127\.0\.0\.1:\d+)\//.exec(line);
        if (ready) resolve({ server, url: `http://${ready[1]}/`, counter, served });
      }
    });
    server.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}
