// What a user's memory holds, from GET /users/{user_id}/stats (or GET /stats over every user,
// service key only): counts by state, type, source and tag, recall, quota, archival due, and
// memories created per day as a chart.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { client, describe, type ServiceStats, type UserStats } from "../api.ts";
import { field, h, show } from "../dom.ts";
import type { Session } from "../session.ts";

function table(caption: string, rows: [string, number | string][]): HTMLTableElement {
  return h("table", { class: "stats" }, h("caption", {}, caption),
    h("tbody", {}, ...(rows.length ? rows : [["none", ""] as [string, string]]).map(([k, v]) =>
      h("tr", {}, h("th", { scope: "row" }, k), h("td", { "data-stat": k }, String(v))))));
}

export async function analyticsView(session: Session, root: HTMLElement): Promise<void> {
  const api = client(session);
  const everyone = h("input", { name: "all_users", type: "checkbox" });
  const body = h("div", { class: "analytics" });
  show(root, h("h2", {}, "Analytics"), field("All users (service key only)", everyone), body);

  async function load(): Promise<void> {
    show(body, h("p", { role: "status" }, "Loading…"));
    try {
      const stats: UserStats | ServiceStats = everyone.checked
        ? await api.serviceStats() : await api.userStats(session.userId);
      render(stats);
    } catch (error) {
      show(body, h("p", { role: "alert", class: "error" }, describe(error)));
    }
  }

  function render(s: UserStats | ServiceStats): void {
    const c = s.counts;
    const cards = h("div", { class: "cards" }, ...(["live", "archived", "superseded", "expired", "deleted"] as const)
      .map((k) => h("div", { class: "card" }, h("span", { class: "n", "data-count": k }, String(c[k])), h("span", {}, k))));
    const parts: Node[] = [cards];
    const chart = h("div", { class: "chart", role: "img",
                             "aria-label": "Memories created per day, the last 90 days" });
    parts.push(h("h3", {}, "Created per day (last 90 days)"), chart);
    parts.push(h("div", { class: "tables" },
      table("By content type (live)", Object.entries(s.content_types)),
      table("By source type (live)", Object.entries(s.source_types)),
      table("Top tags (live)", s.top_tags.map((t) => [t.tag, t.count] as [string, number])),
      table("Recalled (live)", [["never", s.recall.never], ["1-4 times", s.recall.one_to_four],
                                ["5+ times", s.recall.five_plus]]),
      table("Lifecycle", [["next archival run would archive", s.archival_due],
        ...("quota" in s ? [["quota: memories", `${s.quota.memory_count} / ${s.quota.max_memories}`],
          ["quota: today's ingestions", `${s.quota.daily_ingestions} / ${s.quota.max_daily_ingestions}`]]
          : [["users", s.users]]) as [string, string | number][]]),
      ...("busiest_users" in s ? [table("Busiest users (live memories)",
        s.busiest_users.map((u) => [u.user_id, u.live] as [string, number]))] : [])));
    show(body, ...parts);
    drawChart(chart, s.created_per_day);
  }

  everyone.addEventListener("change", () => void load());
  await load();
}

function drawChart(el: HTMLElement, days: { day: string; count: number }[]): void {
  // every day of the window, zero where nothing was created
  const counts = new Map(days.map((d) => [d.day, d.count]));
  const xs: number[] = [];
  const ys: number[] = [];
  const today = new Date();
  for (let i = 89; i >= 0; i--) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    xs.push(d.getTime() / 1000);
    ys.push(counts.get(d.toISOString().slice(0, 10)) ?? 0);
  }
  const width = Math.max(280, Math.min(el.clientWidth || 900, 1100));
  new uPlot({
    width, height: 220,
    series: [{}, { label: "memories", stroke: "#2b6cb0", fill: "rgba(43,108,176,0.15)" }],
    axes: [{}, { label: "per day" }],
    scales: { x: { time: true } },
  }, [xs, ys], el);
}
