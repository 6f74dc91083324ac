"""Chat turns as one prompt string for a model run from its tokenizer (``local``, ``vllm``).

Both providers must build the same text, so prompt log-probs and answers agree between
them: the model's chat template (a final assistant turn is continued, not closed), or
plain ``role: content`` turns for a bare model without one.
"""

from __future__ import annotations

from typing import Any


def chat_prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text for ``messages``; tokenize it without adding special tokens."""
    assistant_last = bool(messages) and messages[-1].get("role") == "assistant"
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=not assistant_last,
            continue_final_message=assistant_last)
    text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return text + ("" if assistant_last else "\n\nassistant:")
