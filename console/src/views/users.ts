// Whose memories to open, when the sign-in named no user: an id typed in, or one of the users
// with the most live memories (GET /stats, service key only). A key bound to one user cannot
// read /stats: the page then asks for that user's id. An empty service shows how to store a
// first memory.
import { client, describe, MemoryApiError } from "../api.ts";
import { field, h, show } from "../dom.ts";
import type { Session } from "../session.ts";

export async function pickUserView(session: Session, root: HTMLElement, open: (userId: string) => void): Promise<void> {
  const userId = h("input", { name: "user_id", id: "pick_user_id", autocomplete: "off", required: true,
                              pattern: "[A-Za-z0-9._:@\\-]{1,255}" });
  const form = h("form", { class: "filters", "aria-label": "Open a user" },
    field("User id", userId), h("button", { type: "submit" }, "Open"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    open(userId.value.trim());
  });
  const users = h("section", { "aria-label": "Users" }, h("p", { role: "status" }, "Loading users…"));
  show(root, h("h2", {}, "Whose memories?"), form, users);
  userId.focus();

  try {
    const stats = await client(session).serviceStats();
    if (!stats.busiest_users.length) {
      show(users, h("p", { class: "empty" }, "No memories are stored yet. Store a first one, then reload:"),
        h("pre", {}, `curl -s -X POST ${location.origin}/ingest -H "X-API-Key: $KEY" `
          + `-H 'Content-Type: application/json' \\\n  -d '{"user_id": "alice", "content": "I am allergic to peanuts", `
          + `"content_type": "fact", "source_type": "chat"}'`));
      return;
    }
    show(users, h("h3", {}, `Users with the most memories (${stats.users} in all)`),
      h("ul", { class: "users" }, ...stats.busiest_users.map((u) =>
        h("li", {}, h("button", { type: "button", class: "link", "data-user": u.user_id, onclick: () => open(u.user_id) },
          u.user_id), ` ${u.live} live memories`))));
  } catch (error) {
    show(users, h("p", { role: error instanceof MemoryApiError && error.status === 403 ? "status" : "alert" },
      error instanceof MemoryApiError && error.status === 403
        ? "This key is bound to one user: type that user's id above."
        : describe(error)));
  }
}
