"""The chat template: how a conversation becomes token ids, the same everywhere in the course.

    <bos> <|user|> Сәлам! <|end|> <|assistant|> Исәнме! <|end|> <|user|> … <|end|> <|assistant|>

Every message is its role token, the ids of its text, and <|end|>. The three tokens are
reserved by 02_train_tokenizer.py (ids 4, 5, 6: config.CHAT_TOKENS); a typed "<|end|>" in a
message is text, not the token, so a user cannot end the assistant's turn for it.

- `render_conversation` → ids and a loss mask for fine-tuning (05_finetune.py): 1 on every
  token of the assistant's answers and on the <|end|> that closes each, 0 elsewhere. The
  model learns to answer and to stop, never to imitate the user.
- `render_prompt` → the ids a model continues to answer: the conversation so far, then
  <|assistant|>. Generation stops at <|end|> (utils.chat).
- `CHAT_TEMPLATE` is the same template in Jinja, for transformers' `apply_chat_template`
  (export_hf.py writes it into tokenizer_config.json).
- `read_conversations` reads data/sft/*.jsonl, one {"messages": [...]} per line, with one
  clear message per bad line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import config
from tatargpt.errors import UserError
from tatargpt.tokenization import Tokenizer

USER, ASSISTANT, END = config.CHAT_TOKENS
ROLES = ("user", "assistant")

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}" + USER
    + "{% elif message['role'] == 'assistant' %}" + ASSISTANT
    + "{% else %}{{ raise_exception('only the roles user and assistant are known') }}"
    "{% endif %}"
    "{{ message['content'] }}" + END
    + "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


def require_chat_tokens(tokenizer: Tokenizer) -> None:
    if not tokenizer.has_chat_tokens:
        raise UserError(
            f"{tokenizer.path}/tokenizer.json has no chat tokens ({', '.join(config.CHAT_TOKENS)}): "
            f"it was trained before they were reserved, and a model trained with it has no "
            f"place for them. Train both again: python 02_train_tokenizer.py && python "
            f"03_train.py (or: bash run_pipeline.sh --from-stage 2 --force)")


def render_conversation(tokenizer: Tokenizer,
                        messages: list[dict]) -> tuple[list[int], list[int]]:
    """(ids, mask) of a whole conversation; mask[i] = 1 where ids[i] is one the model must
    learn to write: a token of an assistant's message or the <|end|> after it."""
    require_chat_tokens(tokenizer)
    role_ids = {"user": tokenizer.user_id, "assistant": tokenizer.assistant_id}
    ids, mask = [tokenizer.bos_id], [0]
    for message in messages:
        text = tokenizer.encode(message["content"]) + [tokenizer.end_id]
        answer = int(message["role"] == "assistant")
        ids += [role_ids[message["role"]]] + text
        mask += [0] + [answer] * len(text)
    return ids, mask


def render_prompt(tokenizer: Tokenizer, messages: list[dict]) -> list[int]:
    """The ids after which the model writes the assistant's next message."""
    if not messages or messages[-1]["role"] != "user":
        raise ValueError("a prompt ends with the user's message")
    ids, _ = render_conversation(tokenizer, messages)
    return ids + [tokenizer.assistant_id]


def check_messages(messages, where: str) -> list[dict]:
    """`messages` if it is a conversation the template can render, else a UserError naming
    `where` (a file and line) and what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: \"messages\" must be a non-empty list of "
                        f"{{\"role\": …, \"content\": …}} objects")
    for i, m in enumerate(messages):
        expected = ROLES[i % 2]
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise UserError(f"{where}: message {i + 1} must have exactly the keys \"role\" and "
                            f"\"content\", got {sorted(m) if isinstance(m, dict) else m!r}")
        if m["role"] != expected:
            raise UserError(f"{where}: message {i + 1} has role {m['role']!r}, expected "
                            f"{expected!r} (user and assistant take turns, the user first)")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise UserError(f"{where}: message {i + 1} ({m['role']}) has empty content")
    if messages[-1]["role"] != "assistant":
        raise UserError(f"{where}: the conversation ends with the user; it must end with the "
                        f"assistant's answer")
    return messages


def read_conversations(path: Path) -> list[tuple[str, list[dict]]]:
    """(where, messages) of each conversation of a JSON Lines file, every line checked;
    `where` is "file, line N" for the messages about it."""
    conversations = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}, line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where} is not JSON ({e.msg}, column {e.colno}): write one "
                            f"{{\"messages\": [...]}} object per line") from e
        if not isinstance(obj, dict) or "messages" not in obj:
            raise UserError(f"{where}: expected an object with a \"messages\" list")
        conversations.append((where, check_messages(obj["messages"], where)))
    return conversations


def is_val(messages: list[dict], val_percent: int) -> bool:
    """The split of a conversation: a stable hash of its text, so that adding or reordering
    conversations never moves one from train to val."""
    key = json.dumps(messages, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return int(hashlib.sha256(key).hexdigest()[:8], 16) % 100 < val_percent


def fit_prompt(tokenizer: Tokenizer, messages: list[dict], limit: int) -> list[int]:
    """render_prompt, within `limit` tokens: the oldest turns are dropped first; a single
    message longer than that keeps its end (what was said last matters most)."""
    while True:
        ids = render_prompt(tokenizer, messages)
        if len(ids) <= limit or len(messages) < 3:
            break
        messages = messages[2:]  # drop the oldest question and its answer
    if len(ids) > limit:  # one long message: <bos> <|user|> …its last tokens <|end|> <|assistant|>
        ids = ids[:2] + ids[len(ids) - (limit - 2):]
    return ids


def stop_ids(tokenizer: Tokenizer) -> set[int]:
    """The tokens that end an answer: <|end|>, and any other special token the model writes
    instead (a turn of its own, <eos>, …), which the answer's text never shows."""
    return {tokenizer.end_id, tokenizer.eos_id, tokenizer.bos_id, tokenizer.user_id,
            tokenizer.assistant_id, tokenizer.pad_id}


def stream_reply(model, tokenizer: Tokenizer, messages: list[dict], max_new_tokens: int = 80,
                 temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
                 repetition_penalty: float = 1.0, seed: int | None = None) -> Iterator[int]:
    """Yield the token ids of the assistant's next message; the last one is <|end|> when the
    model ended its turn (or another special token it wrote instead), and is then the last."""
    import torch

    require_chat_tokens(tokenizer)
    block = model.config.block_size
    room = min(max_new_tokens, block // 2)
    ids = fit_prompt(tokenizer, messages, block - room)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed)) if seed is not None else None
    stops = stop_ids(tokenizer)
    for next_id in model.stream(torch.tensor([ids], device=device), max_new_tokens,
                                temperature=temperature, top_k=top_k, top_p=top_p,
                                repetition_penalty=repetition_penalty, eos_id=tokenizer.end_id,
                                generator=generator):
        token = int(next_id[0])
        yield token
        if token in stops:
            return
