"""`stepaudio prompt chat|tts`: the exact ids the Step models would read, for inspection and debugging."""

from __future__ import annotations

import argparse

from stepaudio.cli.text_tokenize import add_tokenizer_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", required=True)
    chat = sub.add_parser("chat", help="Step-Audio-Chat prompt from role:text messages")
    add_tokenizer_argument(chat)
    chat.add_argument("messages", nargs="+", metavar="ROLE:TEXT", help="e.g. system:be brief user:hello")
    chat.add_argument("--text", action="store_true", help="print the prompt string instead of ids")
    tts = sub.add_parser("tts", help="Step-Audio-TTS-3B prompt")
    add_tokenizer_argument(tts)
    tts.add_argument("text", help="text to speak, instruction tags included")
    tts.add_argument("--prompt-text", required=True, help="transcript of the voice prompt")
    tts.add_argument("--prompt-ids", required=True, help="comma-separated LM audio ids of the voice prompt")
    tts.add_argument("--speaker", default=None, help="built-in speaker name (omit for a clone)")


def run(args: argparse.Namespace) -> int:
    from stepaudio.text.prompts import build_tts_prompt, chat_prompt_text
    from stepaudio.text.tokenizer import StepTokenizer

    tokenizer = StepTokenizer(args.tokenizer)
    if args.kind == "chat":
        messages = []
        for item in args.messages:
            role, sep, content = item.partition(":")
            if not sep:
                print(f"message {item!r} must be ROLE:TEXT")
                return 2
            messages.append({"role": role, "content": content.replace("\\n", "\n")})
        text = chat_prompt_text(messages)
        print(text if args.text else " ".join(map(str, tokenizer.encode(text))))
        return 0
    prompt_ids = [int(x) for x in args.prompt_ids.split(",") if x.strip()]
    ids = build_tts_prompt(
        tokenizer, text=args.text, prompt_text=args.prompt_text, prompt_audio_ids=prompt_ids, speaker=args.speaker
    )
    print(" ".join(map(str, ids)))
    return 0
