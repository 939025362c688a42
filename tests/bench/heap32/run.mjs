// The webassembly port's side of tests/bench/bench_heap32.py: runs
// device/h32.py's runs in a 32-bit MicroPython under Node, one fresh
// MicroPython instance per run, and reports the heap at every boundary.
//
//   node run.mjs CONFIG.json
//
// CONFIG: {"micropython": path of micropython.mjs, "heapsize": bytes,
//          "pystack": words, "trees": [[host dir, MicroPython dir], ...],
//          "env": {name: value}, "runs": [{"name", "args", "setup"}]}
// Output, one JSON object per line:
//   {"base": live heap before anything, "harness": after importing h32,
//    "standins": after h32.standins() and the run's setup}   once per run
//   {"run", "label", "used", "live"}                         per boundary
//   {"run", "done": true, "ms"} or {"run", "error", "log"}   per run
//
// The port's GC runs only when control is back in JavaScript: each call
// below is a top-level call, so "used" (read as a step ends) is the live heap
// before the step plus all the step allocated, and "live" (read by the next
// call, after the collection) is what survived it.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const { loadMicroPython } = await import(pathToFileURL(config.micropython).href);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

function copyTree(mp, src, dst) {
  mp.FS.mkdirTree(dst);
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    const from = path.join(src, e.name);
    const to = dst + "/" + e.name;
    if (e.isDirectory()) copyTree(mp, from, to);
    else mp.FS.writeFile(to, fs.readFileSync(from));
  }
}

// The sim board reads its settings with os.getenv, which this port's os lacks.
const PRELUDE = (env, paths) => `
import os, sys
os.getenv = ${JSON.stringify(env)}.get
for p in ${JSON.stringify(paths)}:
    sys.path.append(p)
`;

for (const run of config.runs) {
  const log = [];
  const keep = (line) => { log.push(line); if (log.length > 40) log.shift(); };
  const started = Date.now();
  try {
    const mp = await loadMicroPython({
      heapsize: config.heapsize, pystack: config.pystack, stdout: keep, stderr: keep,
    });
    for (const [src, dst] of config.trees) copyTree(mp, src, dst);
    mp.runPython(PRELUDE(config.env, config.trees.map(([, dst]) => dst)));
    const gc = mp.pyimport("gc");
    const live = () => { gc.collect(); return gc.mem_alloc(); };
    const base = live();
    mp.runPython("import h32");
    const harness = live();
    mp.runPython("h32.standins()");
    if (run.setup) mp.runPython(run.setup);
    emit({ run: run.name, base, harness, standins: live() });
    mp.runPython(`h32.start(${JSON.stringify(run.name)}, *${JSON.stringify(run.args)})`);
    const h32 = mp.pyimport("h32");
    for (;;) {
      const [label, used] = h32.step().split(" ");
      if (label === "None") break;
      emit({ run: run.name, label, used: Number(used), live: h32.live() });
    }
    emit({ run: run.name, done: true, ms: Date.now() - started });
  } catch (e) {
    emit({ run: run.name, error: String(e && e.message || e), log });
  }
}
