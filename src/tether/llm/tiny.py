"""A tiny GPT-2 built offline, for tests, benchmarks and the demo: nothing here downloads weights.

A byte-level BPE tokenizer is trained on a small corpus (support-desk sentences made here), a 4-layer GPT-2
is initialised from a seed and trained for a few steps on the same corpus, and both are saved with
``save_pretrained`` so the folder loads like any Hugging Face model. The same seed gives the same files.
"""

from __future__ import annotations

import random
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SYSTEM = "You are the support assistant."
# What the tiny assistant learns: the subject of a question decides its answer.
_ANSWERS = {
    "my password": "Open Settings, choose Security and follow the link we email you.",
    "two-factor": "Open Settings, choose Security and scan the new code with your app.",
    "the refund": "Refunds reach your card within five business days.",
    "the invoice": "Invoices are under Billing, then History; each has a PDF.",
    "my order": "Orders can be changed from the Orders page until they ship.",
    "the subscription": "You can cancel or renew at any time from the Billing page.",
    "my account": "Your account settings are under Profile.",
}
_VERBS = ["reset", "cancel", "change", "update", "download", "renew", "verify"]


def corpus(n: int = 600, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        subject = rng.choice(sorted(_ANSWERS))
        q = f"How do I {rng.choice(_VERBS)} {subject}?"
        system = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n" if rng.random() < 0.5 else ""
        lines.append(f"{system}<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{_ANSWERS[subject]}<|im_end|>\n")
    return lines


def build_tiny_gpt2(
    dest: str | Path,
    *,
    seed: int = 0,
    n_layer: int = 4,
    n_embd: int = 64,
    n_head: int = 4,
    n_positions: int = 4096,
    vocab_size: int = 512,
    train_steps: int = 150,
) -> Path:
    """Write a tiny chat-capable GPT-2 and its tokenizer to ``dest``; returns the folder."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    texts = corpus(seed=seed)
    bpe = ByteLevelBPETokenizer()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=specials, show_progress=False)
    special = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>"}
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe._tokenizer,  # the Rust tokenizer inside; the wrapper has no public accessor
        **special,
        pad_token=special["bos_token"],
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    if train_steps:
        ids = [tok(t)["input_ids"] for t in texts]
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        rng = random.Random(seed)
        model.train()
        for _ in range(train_steps):
            batch = rng.sample(ids, 16)
            width = max(map(len, batch))
            x = torch.full((len(batch), width), tok.pad_token_id)
            labels = torch.full((len(batch), width), -100)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, seq in enumerate(batch):
                x[i, : len(seq)] = torch.tensor(seq)
                labels[i, : len(seq)] = torch.tensor(seq)
                mask[i, : len(seq)] = 1
            loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()  # type: ignore[no-untyped-call]
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest
