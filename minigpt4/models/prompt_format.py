"""What a prompt format means for the tokenizer: the formats, and the token that ends an answer.

``llama2_inst`` wraps the user turn in ``[INST] ... [/INST]`` and ends an answer with EOS
(``</s>``); ``chat_template`` uses the tokenizer's own chat template and ends an answer with the
first token the template writes after the assistant's text (Llama-3 ``<|eot_id|>``, Qwen
``<|im_end|>``). Training appends that token to the target, generation stops at it and label
scoring scores it. It lives with the model because the model needs it (`EmotionLLaMA` looks it up
once, when it is built); the prompt template (`minigpt4.data.prompts.PromptTemplate`) uses the
same function.
"""

from __future__ import annotations

from minigpt4.common.config import ConfigError

PROMPT_FORMATS = ("llama2_inst", "chat_template")


def require_chat_template(tokenizer) -> None:
    """A ConfigError naming the fix when `tokenizer` has no chat template."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", None) or "the tokenizer"
        raise ConfigError(f"model.prompt_format is chat_template but {name} has no chat template; use an "
                         "instruct model's tokenizer (tokenizer_config.json with chat_template) or prompt_format=llama2_inst")


def end_of_answer_id(tokenizer, prompt_format: str) -> int:
    """The token ending an answer: EOS for ``llama2_inst``; for ``chat_template``, the first token
    the template writes after the assistant's text (found by rendering a one-word answer).

    Rendering a template costs a Jinja pass: callers look it up once and keep it.
    """
    if prompt_format not in PROMPT_FORMATS:
        raise ConfigError(f"unknown prompt format {prompt_format!r}; choose one of {', '.join(PROMPT_FORMATS)}")
    if prompt_format == "llama2_inst":
        return tokenizer.eos_token_id
    require_chat_template(tokenizer)
    answer = "EMOTIONANSWER"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "question"}, {"role": "assistant", "content": answer}], tokenize=False)
    ids = tokenizer(text.split(answer, 1)[-1].strip(), add_special_tokens=False)["input_ids"]
    return ids[0] if ids else tokenizer.eos_token_id
