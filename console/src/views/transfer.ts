// Export a user's memories as NDJSON (page by page, with progress) and import a file (in
// chunks the API accepts, with progress).
import { client, describe } from "../api.ts";
import { field, h, show } from "../dom.ts";
import type { Session } from "../session.ts";

const CHUNK_LINES = 500;
const CHUNK_BYTES = 900_000;

export function transferView(session: Session, root: HTMLElement): void {
  const api = client(session);
  const progress = h("progress", { max: 1, value: 0, "aria-label": "Progress" });
  const status = h("p", { role: "status", class: "status" });
  const superseded = h("input", { name: "include_superseded", type: "checkbox" });
  const exportButton = h("button", { type: "button" }, "Export to a file");
  const file = h("input", { name: "import_file", type: "file", accept: ".ndjson,.jsonl,application/x-ndjson" });
  const importButton = h("button", { type: "button" }, "Import");
  show(root, h("h2", {}, "Export / import"),
    h("section", {}, h("h3", {}, `Export ${session.userId}`), field("Superseded memories too", superseded), exportButton),
    h("section", {}, h("h3", {}, `Import into ${session.userId}`),
      h("p", {}, "NDJSON as the export writes it: ids and dates are kept, importing twice creates nothing."),
      field("File", file), importButton),
    progress, status);

  exportButton.addEventListener("click", async () => {
    const lines: string[] = [];
    let cursor: string | undefined;
    progress.removeAttribute("value");
    try {
      do {
        const page = await api.exportUser(session.userId, {
          ...(cursor ? { cursor } : {}), ...(superseded.checked ? { include_superseded: true } : {}),
        });
        lines.push(...page.memories.map((m) => JSON.stringify(m)));
        cursor = page.nextCursor;
        status.textContent = `${lines.length} memories exported…`;
      } while (cursor);
      const blob = new Blob([lines.map((l) => l + "\n").join("")], { type: "application/x-ndjson" });
      const link = h("a", { href: URL.createObjectURL(blob), download: `${session.userId}.ndjson` }, "download");
      link.click();
      progress.value = 1;
      status.textContent = `Exported ${lines.length} memories.`;
    } catch (error) {
      status.textContent = describe(error);
    }
  });

  importButton.addEventListener("click", async () => {
    const chosen = file.files?.[0];
    if (!chosen) {
      status.textContent = "Choose a file first.";
      return;
    }
    const lines = (await chosen.text()).split("\n").filter((l) => l.trim());
    const chunks: string[][] = [];
    let chunk: string[] = [];
    let bytes = 0;
    for (const line of lines) {
      const size = new TextEncoder().encode(line).length + 1;
      if (chunk.length && (chunk.length >= CHUNK_LINES || bytes + size > CHUNK_BYTES)) {
        chunks.push(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(line);
      bytes += size;
    }
    if (chunk.length) chunks.push(chunk);
    const totals = { created: 0, duplicate: 0, rejected: 0 };
    progress.max = chunks.length || 1;
    progress.value = 0;
    try {
      for (const [i, part] of chunks.entries()) {
        const result = await api.importUser(session.userId, part.join("\n") + "\n");
        totals.created += result.created;
        totals.duplicate += result.duplicate;
        totals.rejected += result.rejected.length;
        progress.value = i + 1;
        status.textContent = `Imported ${i + 1} of ${chunks.length} chunks: ${totals.created} created, `
          + `${totals.duplicate} duplicates, ${totals.rejected} rejected.`;
      }
      if (!chunks.length) status.textContent = "The file has no lines.";
    } catch (error) {
      status.textContent = describe(error);
    }
  });
}
