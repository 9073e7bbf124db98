// The console is served under /console/ by the ConsoleFunction (infra/template.yaml), from
// functions/console/static. It imports the project's TypeScript client, whose REST part runs in
// any browser; its Node-only parts (Redis over node:net, node:crypto) are swapped for the shims
// in src/shims, which the console never calls.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  base: "/console/",
  resolve: {
    alias: [
      { find: "node:crypto", replacement: here("./src/shims/node-crypto.ts") },
      { find: /^\.\/resp\.js$/, replacement: here("./src/shims/redis.ts") },
    ],
  },
  build: {
    outDir: here("../functions/console/static"),
    emptyOutDir: true,
    sourcemap: false,
    // no inline scripts or styles: the page's Content-Security-Policy allows neither
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
