// The search playground: a query with filters, top_k and min_relevance, the ranked results with
// the parts of each score (explain: true), and the /context text an agent would get for the
// same query and budget.
import { client, describe } from "../api.ts";
import { field, formatDate, h, num, show } from "../dom.ts";
import type { Session } from "../session.ts";

export function searchView(session: Session, root: HTMLElement): void {
  const api = client(session);
  const query = h("input", { name: "query", type: "search", required: true, maxlength: 2000 });
  const topK = h("input", { name: "top_k", type: "number", min: 1, max: 100, value: 10 });
  const minRelevance = h("input", { name: "min_relevance", type: "number", min: 0, max: 1, step: 0.05,
                                    placeholder: "none" });
  const tags = h("input", { name: "tags", placeholder: "comma separated" });
  const maxTokens = h("input", { name: "max_tokens", type: "number", min: 1, max: 32000, value: 500 });
  const archived = h("input", { name: "include_archived", type: "checkbox" });
  const superseded = h("input", { name: "include_superseded", type: "checkbox" });
  const form = h("form", { class: "filters", "aria-label": "Search" },
    field("Query", query), field("top_k", topK), field("min_relevance (cosine)", minRelevance), field("Tags", tags),
    field("Context budget (tokens)", maxTokens), field("Archived too", archived), field("Superseded too", superseded),
    h("button", { type: "submit" }, "Search"));
  const status = h("p", { role: "status", class: "status" });
  const results = h("div", { class: "results" });
  const context = h("section", { class: "context", "aria-label": "Context" });
  show(root, h("h2", {}, "Search playground"), form, status, results, context);
  query.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "Searching…";
    const tagList = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    const common = {
      query: query.value, user_id: session.userId,
      ...(minRelevance.value !== "" ? { min_relevance: Number(minRelevance.value) } : {}),
      ...(tagList.length ? { filters: { tags: tagList } } : {}),
      ...(archived.checked ? { include_archived: true } : {}),
      ...(superseded.checked ? { include_superseded: true } : {}),
    };
    try {
      const [found, ctx] = await Promise.all([
        api.search({ ...common, top_k: Number(topK.value), explain: true }),
        api.context({ ...common, max_tokens: Number(maxTokens.value) }),
      ]);
      status.textContent = `${found.results.length} results in ${found.took_ms} ms`;
      const table = h("table", { class: "scores" },
        h("caption", {}, "relevance = 0.6·match + 0.3·importance + 0.1·recency (default weights) + neighbour; "
          + "match fuses cosine and BM25 (times the length factor of a long memory), neighbour lifts a memory next to "
          + "one of the best hits"),
        h("thead", {}, h("tr", {}, ...["#", "content", "cosine", "lexical", "match", "importance", "recency",
          "neighbour", "length", "relevance", "created"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, ...found.results.map((r, i) => h("tr", {},
          h("td", {}, i + 1), h("td", { class: "content" }, r.content),
          h("td", {}, num(r.explain?.cosine)), h("td", {}, num(r.explain?.lexical)), h("td", {}, num(r.explain?.match)),
          h("td", {}, num(r.explain?.importance)), h("td", {}, num(r.explain?.recency)),
          h("td", {}, num(r.explain?.neighbour)), h("td", {}, num(r.explain?.length_factor)),
          h("td", {}, num(r.explain?.relevance)), h("td", {}, formatDate(r.created_at))))));
      show(results, found.results.length ? table : h("p", {}, "Nothing found."));
      show(context, h("h3", {}, `Context for an agent: ${ctx.token_count} tokens`,
        ctx.truncated ? " (truncated to the budget)" : ""), h("pre", { class: "context-text" }, ctx.context || "(empty)"));
    } catch (error) {
      status.textContent = describe(error);
    }
  });
}
