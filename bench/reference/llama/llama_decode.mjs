// llama.cpp reference for bench_generate: decode tokens/s at a given context
// depth on the random-weight Qwen2.5-0.5B-shaped model that
// bench/reference/write_gguf.py writes (BF16 weights, tied embeddings), with
// an F16 KV cache, on the CPU only, with 2 threads (the project machine's
// cores; --threads to change). It measures what
// llama.cpp's `llama-bench -d DEPTH -n N -ctk f16 -ctv f16 -t 2` measures as
// token generation: prefill DEPTH random token ids (batches of 512; timed
// and reported as prefill tokens/s), then decode N tokens one at a time,
// each a llama_decode of one random id whose logits are computed (the
// lm_head is part of every step), timed after one untimed step. The next
// id is random, not the model's choice, as in llama-bench; the greedy
// sample node-llama-cpp takes of each step's logits (one argmax over the
// vocabulary) is included in the time.
//
// llama.cpp comes prebuilt from npm: node-llama-cpp (its JS API) and
// @node-llama-cpp/linux-x64 (llama.cpp and ggml shared libraries with one
// ggml CPU backend per x86 level; ggml loads the best one this CPU runs and
// the script prints which). No GPU backend is installed or asked for.
//
// Usage (from the repository root):
//   /usr/bin/python3 bench/reference/write_gguf.py     # once, ~1 GB in $TMPDIR
//   (cd bench/reference/llama && npm install --omit=optional)
//   node bench/reference/llama/llama_decode.mjs [--depth 4096] [--tokens 32]
//       [--threads 2] [--flash-attn auto|on|off] [--model PATH]
// --depth 32768 for the 32k figure. package-lock.json pins every version;
// `--omit=optional` keeps npm from fetching node-llama-cpp's CUDA and Vulkan
// builds (the CPU one is a direct dependency). `npm ci` refuses this lock
// file because npm leaves the other platforms' optional packages out of it.
// Needs Node 20 or newer.
import {getLlama, GgmlType, LlamaLogLevel} from 'node-llama-cpp';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const BATCH = 512;  // llama-bench's default micro-batch

function fail(message) {
  console.error(`llama_decode.mjs: ${message}`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = {
    depth: 4096,
    tokens: 32,
    threads: 2,
    flashAttn: 'auto',
    model: path.join(os.tmpdir(), 'kvq-bench-models', 'qwen2.5-0.5b-bf16.gguf'),
  };
  const positive = (flag, text) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1)
      fail(`${flag} needs a positive integer, got '${text}'`);
    return value;
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) fail(`${flag} needs a value`);
    switch (flag) {
      case '--depth':
        args.depth = positive(flag, value);
        break;
      case '--tokens':
        args.tokens = positive(flag, value);
        break;
      case '--threads':
        args.threads = positive(flag, value);
        break;
      case '--model':
        args.model = value;
        break;
      case '--flash-attn':
        if (!['auto', 'on', 'off'].includes(value)) {
          fail(`--flash-attn takes auto, on or off, got '${value}'`);
        }
        args.flashAttn = value;
        break;
      default:
        fail(`unknown flag '${flag}' (flags: --depth, --tokens, --threads, --flash-attn, --model)`);
    }
  }
  if (!fs.existsSync(args.model))
    fail(`no model at ${args.model}: run bench/reference/write_gguf.py first`);
  return args;
}

// mulberry32: a fixed sequence of token ids, the same on every run.
function randomIds(count, vocab, seed) {
  let state = seed >>> 0;
  const ids = new Array(count);
  for (let i = 0; i < count; ++i) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    ids[i] = (((t ^ (t >>> 14)) >>> 0) % vocab);
  }
  return ids;
}

const args = parseArgs(process.argv.slice(2));
// llama.cpp's own log lines name the CPU backend it loaded and how it set up
// the context; keep them, print the ones that say what ran.
const logs = [];
const llama = await getLlama({
  gpu: false,
  build: 'never',
  maxThreads: args.threads,
  logLevel: LlamaLogLevel.debug,
  logger: (level, message) => logs.push(message),
});
if (llama.gpu !== false) fail(`expected the CPU-only backend, got GPU '${llama.gpu}'`);
const model = await llama.loadModel({modelPath: args.model, gpuLayers: 0});
// token_embd is [hidden, vocab] innermost first.
const vocab =
    Number(model.fileInfo.fullTensorInfo.find((t) => t.name === 'token_embd.weight').dimensions[1]);
const context = await model.createContext({
  contextSize: args.depth + args.tokens + 1,
  batchSize: BATCH,
  sequences: 1,
  threads: {ideal: args.threads, min: args.threads},
  flashAttention: args.flashAttn === 'auto' ? 'auto' : args.flashAttn === 'on',
  experimentalKvCacheKeyType: 'F16',
  experimentalKvCacheValueType: 'F16',
});
const sequence = context.getSequence();
const ids = randomIds(args.depth + args.tokens + 1, vocab, 42);

let start = process.hrtime.bigint();
await sequence.evaluateWithoutGeneratingNewTokens(ids.slice(0, args.depth));
const prefillSeconds = Number(process.hrtime.bigint() - start) / 1e9;

const step = async (id) => {
  const [result] = await sequence.controlledEvaluate(
      [[id, {generateNext: {token: true, options: {temperature: 0}}}]]);
  if (result?.next?.token === undefined) fail('a decode step returned no token');
};
await step(ids[args.depth]);  // untimed: the first single-token graph is built here
start = process.hrtime.bigint();
for (let i = 1; i <= args.tokens; ++i) await step(ids[args.depth + i]);
const decodeSeconds = Number(process.hrtime.bigint() - start) / 1e9;

const logged = (pattern) => logs.map((l) => l.match(pattern)).find(Boolean)?.[1] ?? 'unknown';
const pkg = JSON.parse(
    fs.readFileSync(new URL('./node_modules/node-llama-cpp/package.json', import.meta.url)));
const release = `${llama.llamaCppRelease.release} via node-llama-cpp ${pkg.version}`;
const cpuBackend = path.basename(logged(/loaded CPU backend from (\S+)/));
const cache = `K ${GgmlType[context.kvCacheKeyType]}, V ${GgmlType[context.kvCacheValueType]}`;
const flash = logged(/Flash Attention (enabled|disabled)/);
const batch = `${logged(/n_batch\s*=\s*(\d+)/)}, micro-batch ${logged(/n_ubatch\s*=\s*(\d+)/)}`;
console.log(`llama.cpp ${release} (${llama.buildType}); ggml CPU backend ${cpuBackend}`);
console.log(`system info: ${llama.systemInfo.trim()}`);
console.log(
    `threads ${context.currentThreads}; KV cache ${cache}; flash attention ${flash} ` +
    `(asked: ${args.flashAttn}); context ${context.contextSize}; batch ${batch}`);
console.log(
    `depth ${args.depth}: prefill ${(args.depth / prefillSeconds).toFixed(1)} tokens/s; ` +
    `decode ${(args.tokens / decodeSeconds).toFixed(2)} tokens/s (${args.tokens} steps)`);
await context.dispose();
await model.dispose();
await llama.dispose();
