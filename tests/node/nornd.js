'use strict';
// Starts and stops one nornd for the Node tests (same protocol as the C
// harness and tests/python/nornd_proc.py): --listen 127.0.0.1:0, a fresh
// data directory, and the bound port read back from --port-file.
//
// Environment: NORND (path of the nornd binary, required); NORN_TEST_KEEP
// keeps the scratch directory (data, nornd.log) for inspection.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const START_TIMEOUT_MS = 10000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Nornd {
  constructor({ args = [], env = {} } = {}) {
    this.binary = process.env.NORND;
    if (!this.binary) throw new Error('NORND is not set (path of the nornd binary)');
    this.extraArgs = args;
    this.extraEnv = env;
    this.dir = null;
    this.proc = null;
    this.port = null;
    this.exit = null; // {code, signal} once exited
    this.exited = null; // Promise of this.exit
  }

  get target() {
    return `127.0.0.1:${this.port}`;
  }

  get logPath() {
    return path.join(this.dir, 'nornd.log');
  }

  logText() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  async start() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'norn-node-'));
    const portFile = path.join(this.dir, 'port');
    const argv = ['--listen', '127.0.0.1:0', '--data-dir', path.join(this.dir, 'data'),
      '--port-file', portFile, ...this.extraArgs];
    // Our environment minus NORN_* (nornd reads those as configuration).
    const env = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NORN_')) env[k] = v;
    Object.assign(env, this.extraEnv);
    const log = fs.openSync(this.logPath, 'w');
    this.proc = spawn(this.binary, argv, { env, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.proc.on('error', (err) => {
        this.exit = { code: null, signal: null, error: err };
        resolve(this.exit);
      });
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.exit) {
        throw new Error(`nornd exited (${JSON.stringify(this.exit)}) before listening; log:\n${this.logText()}`);
      }
      let text = '';
      try {
        text = fs.readFileSync(portFile, 'utf8').trim();
      } catch { /* not yet */ }
      if (/^\d+$/.test(text) && Number(text) > 0) {
        this.port = Number(text);
        return this;
      }
      await sleep(10);
    }
    throw new Error(`nornd wrote no port file within ${START_TIMEOUT_MS} ms; log:\n${this.logText()}`);
  }

  // Sends SIGTERM and resolves to {code, signal} (rejects after timeoutMs).
  async terminate(timeoutMs = 20000) {
    if (!this.exit) this.proc.kill('SIGTERM');
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`nornd still running ${timeoutMs} ms after SIGTERM`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  // Kills the process if it still runs and removes the scratch directory.
  async close() {
    if (this.proc && !this.exit) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
    if (this.dir) {
      if (process.env.NORN_TEST_KEEP) console.error(`nornd scratch directory kept: ${this.dir}`);
      else fs.rmSync(this.dir, { recursive: true, force: true });
      this.dir = null;
    }
  }
}

module.exports = { Nornd };
