// The console: sign in, then four views chosen by the URL fragment (#memories, #search,
// #analytics, #transfer). The key is never in the URL: only the view's name is.
import { describe } from "./api.ts";
import { field, h, show } from "./dom.ts";
import { forget, load, save, type Session } from "./session.ts";
import { analyticsView } from "./views/analytics.ts";
import { pickUserView } from "./views/users.ts";
import { memoriesView } from "./views/memories.ts";
import { searchView } from "./views/search.ts";
import { transferView } from "./views/transfer.ts";

export type View = (session: Session, root: HTMLElement) => void | Promise<void>;

const VIEWS: Record<string, [string, View]> = {
  memories: ["Memories", memoriesView],
  search: ["Search", searchView],
  analytics: ["Analytics", analyticsView],
  transfer: ["Export / import", transferView],
};

const app = document.getElementById("app") as HTMLElement;

function signIn(): void {
  const apiKey = h("input", { name: "api_key", id: "api_key", type: "password", autocomplete: "off", required: true });
  const userId = h("input", { name: "user_id", id: "user_id", autocomplete: "off",
                              pattern: "[A-Za-z0-9._:@\\-]{1,255}" });
  const form = h("form", { class: "signin", "aria-label": "Sign in" },
    h("h1", {}, "coda-memory console"),
    h("p", {}, "Sign in with an API key: the key printed by make run (the service key) or a key bound to one user. "
      + "It stays in this browser tab only and is forgotten when you sign out or close the tab."),
    field("API key", apiKey),
    field("User id (whose memories to open; leave empty to pick one)", userId),
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    save({ apiKey: apiKey.value.trim(), userId: userId.value.trim() });
    location.hash = "#memories";
    render();
  });
  show(app, form);
  apiKey.focus();
}

function render(): void {
  const session = load();
  if (!session) {
    signIn();
    return;
  }
  const signOut = h("button", { type: "button", class: "secondary", onclick: () => {
    forget();
    location.hash = "";
    render();
  } }, "Sign out");
  if (!session.userId) {
    const main = h("main", { id: "view", tabindex: "-1" });
    show(app, h("header", {}, h("strong", {}, "coda-memory"), signOut), main);
    void pickUserView(session, main, (userId) => {
      save({ ...session, userId });
      location.hash = "#memories";
      render();
    });
    return;
  }
  const name = location.hash.replace(/^#/, "").split("/")[0] || "memories";
  const [, view] = VIEWS[name] ?? VIEWS.memories;
  const main = h("main", { id: "view", tabindex: "-1" });
  const nav = h("nav", { "aria-label": "Views" },
    ...Object.entries(VIEWS).map(([key, [title]]) =>
      h("a", { href: `#${key}`, "aria-current": key === name ? "page" : undefined }, title)));
  const switchUser = h("button", { type: "button", class: "secondary", onclick: () => {
    save({ ...session, userId: "" });
    render();
  } }, "Switch user");
  show(app,
    h("header", {}, h("strong", {}, "coda-memory"), h("span", { class: "who" }, `user: ${session.userId}`), nav,
      switchUser, signOut),
    main);
  Promise.resolve(view(session, main)).catch((error) => show(main, h("p", { role: "alert", class: "error" },
    describe(error))));
}

window.addEventListener("hashchange", render);
render();
