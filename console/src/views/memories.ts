// Browse a user's memories (newest first, keyset pages, the list filters), open one: every
// field, its history and relations; correct it, delete it, restore or reinstate it.
import { client, describe, type Memory } from "../api.ts";
import { field, formatDate, h, show } from "../dom.ts";
import type { Session } from "../session.ts";

const TYPES = ["", "conversation", "fact", "preference", "event"];

export function memoriesView(session: Session, root: HTMLElement): void {
  const api = client(session);
  const type = h("select", { name: "content_type" }, ...TYPES.map((t) => h("option", { value: t }, t || "any")));
  const tag = h("input", { name: "tag" });
  const context = h("input", { name: "context_id" });
  const after = h("input", { name: "created_after", type: "date" });
  const before = h("input", { name: "created_before", type: "date" });
  const archived = h("input", { name: "include_archived", type: "checkbox" });
  const superseded = h("input", { name: "include_superseded", type: "checkbox" });
  const filters = h("form", { class: "filters", "aria-label": "Filters" },
    field("Type", type), field("Tag", tag), field("Context", context), field("Created after", after),
    field("Created before", before), field("Archived too", archived), field("Superseded too", superseded),
    h("button", { type: "submit" }, "Apply"));
  const status = h("p", { role: "status", class: "status" });
  const list = h("ol", { class: "memories", "aria-label": "Memories" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Next page");
  const detail = h("section", { class: "detail", "aria-label": "Memory", "aria-live": "polite" });
  show(root, h("h2", {}, "Memories"), filters, status, h("div", { class: "split" },
    h("div", {}, list, more), detail));

  let cursor: string | null = null;
  async function page(first: boolean): Promise<void> {
    status.textContent = "Loading…";
    try {
      const result = await api.listMemories(session.userId, {
        limit: 20,
        ...(cursor && !first ? { cursor } : {}),
        ...(type.value ? { content_type: type.value as Memory["content_type"] } : {}),
        ...(tag.value.trim() ? { tag: tag.value.trim() } : {}),
        ...(context.value.trim() ? { context_id: context.value.trim() } : {}),
        ...(after.value ? { created_after: `${after.value}T00:00:00Z` } : {}),
        ...(before.value ? { created_before: `${before.value}T23:59:59Z` } : {}),
        ...(archived.checked ? { include_archived: true } : {}),
        ...(superseded.checked ? { include_superseded: true } : {}),
      });
      if (first) list.replaceChildren();
      for (const memory of result.memories) list.append(row(memory));
      cursor = result.next_cursor;
      more.hidden = !cursor;
      const shown = list.children.length;
      status.textContent = shown ? `${shown} shown${cursor ? ", more on the next page" : ""}` : "No memories match.";
    } catch (error) {
      status.textContent = describe(error);
      status.setAttribute("role", "alert");
    }
  }

  function row(memory: Memory): HTMLLIElement {
    const state = memory.superseded_by ? "superseded" : memory.archived ? "archived" : "";
    return h("li", {},
      h("button", { type: "button", class: "memory", "data-id": memory.id, onclick: () => open(memory.id) },
        h("span", { class: "content" }, memory.content),
        h("span", { class: "meta" }, `${formatDate(memory.created_at)} · ${memory.content_type}`,
          memory.tags.length ? ` · ${memory.tags.join(", ")}` : "", state ? ` · ${state}` : "")));
  }

  async function open(id: string): Promise<void> {
    show(detail, h("p", { role: "status" }, "Loading…"));
    try {
      const [memory, history, relations] = await Promise.all([
        api.getMemory(id, session.userId), api.memoryHistory(id, session.userId),
        api.listRelations(id, session.userId),
      ]);
      renderDetail(memory, history.history, relations.relations);
    } catch (error) {
      show(detail, h("p", { role: "alert", class: "error" }, describe(error)));
    }
  }

  function renderDetail(memory: Memory, history: { version: number; action: string; at: string; actor: string;
                                                   changes: Record<string, unknown> }[],
                        relations: { source_id: string; type: string; target_id: string; created_at: string }[]): void {
    const fields = h("dl", { class: "fields" });
    for (const [key, value] of Object.entries(memory)) {
      fields.append(h("dt", {}, key), h("dd", {}, typeof value === "object" && value !== null
        ? JSON.stringify(value) : String(value ?? "")));
    }
    const content = h("textarea", { name: "content", rows: 4 });
    content.value = memory.content;
    const importance = h("input", { name: "importance", type: "number", min: 0, max: 1, step: 0.05,
                                    value: memory.importance });
    const tags = h("input", { name: "tags", value: memory.tags.join(", ") });
    const message = h("p", { role: "status", class: "status" });
    const edit = h("form", { class: "edit", "aria-label": "Edit memory" },
      field("Content", content), field("Importance", importance), field("Tags (comma separated)", tags),
      h("button", { type: "submit" }, "Save"));
    edit.addEventListener("submit", async (event) => {
      event.preventDefault();
      const patch: Record<string, unknown> = {};
      if (content.value !== memory.content) patch.content = content.value;
      if (Number(importance.value) !== memory.importance) patch.importance = Number(importance.value);
      const newTags = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
      if (newTags.join("\u0000") !== memory.tags.join("\u0000")) patch.tags = newTags;
      if (!Object.keys(patch).length) {
        message.textContent = "Nothing changed.";
        return;
      }
      await act(() => api.updateMemory(memory.id, session.userId, patch), `Saved: version ${memory.version + 1}.`);
    });
    async function act(call: () => Promise<unknown>, done: string, reopen = true): Promise<void> {
      message.textContent = "Working…";
      try {
        await call();
        if (reopen) await open(memory.id);
        (detail.querySelector(".status") as HTMLElement | null)?.replaceChildren(done);
        void page(true);
      } catch (error) {
        message.textContent = describe(error);
      }
    }
    const actions = h("div", { class: "actions" });
    if (memory.archived) {
      actions.append(h("button", { type: "button", class: "secondary", onclick: () =>
        act(() => api.updateMemory(memory.id, session.userId, { archived: false }), "Restored.") }, "Restore"));
    }
    if (memory.superseded_by) {
      actions.append(h("button", { type: "button", class: "secondary", onclick: () =>
        act(() => api.updateMemory(memory.id, session.userId, { superseded_by: null }), "Reinstated.") },
        "Reinstate"));
    }
    actions.append(h("button", { type: "button", class: "danger", onclick: () => {
      if (!window.confirm("Delete this memory? It leaves every search and listing.")) return;
      void act(() => api.deleteMemory(memory.id, session.userId), "Deleted.", false)
        .then(() => show(detail, h("p", { role: "status" }, "Deleted.")));
    } }, "Delete"));
    const historyList = h("ol", { class: "history", "aria-label": "History" },
      ...history.map((e) => h("li", {}, h("strong", {}, `v${e.version} ${e.action}`),
        ` ${formatDate(e.at)} by ${e.actor}`,
        Object.keys(e.changes).length ? h("pre", {}, JSON.stringify(e.changes, null, 2)) : null)));
    const relationList = relations.length
      ? h("ul", { class: "relations", "aria-label": "Relations" }, ...relations.map((r) => h("li", {},
        h("button", { type: "button", class: "link", onclick: () => open(r.source_id === memory.id ? r.target_id
          : r.source_id) }, r.source_id === memory.id ? `this ${r.type} ${r.target_id}` : `${r.source_id} ${r.type} this`))))
      : h("p", {}, "No relations.");
    show(detail, h("h3", {}, "Memory"), message, edit, actions, h("h4", {}, "Fields"), fields,
      h("h4", {}, "History"), historyList, h("h4", {}, "Relations"), relationList);
  }

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    cursor = null;
    void page(true);
  });
  more.addEventListener("click", () => void page(false));
  void page(true);
}
