"""Token ids to text while they are generated: incremental, never a split character, and the
stop strings of a request held back until they can be ruled out.

Decoding a token alone is wrong for most tokenizers: a byte-level BPE token may hold half of a
UTF-8 character, and SentencePiece drops the leading space of a sequence's first piece. So each
new token is decoded together with a few tokens before it (a window that slides forward), and
the text it adds is what that decoding has beyond the same window without it. A decoding that
ends in U+FFFD (an incomplete character) adds nothing yet; the bytes to finish it come with the
next token. This is the "prefix / read offset" scheme of serving systems such as vLLM and Text
Generation Inference, written here for `attnlab.tokenizers.Tokenizer`.

Stop strings (OpenAI's `stop`): the text is cut before the first occurrence of any of them, and
text that might be the start of one is held back until a later token rules it out, so a
streamed response never shows part of a stop string.

    stream = TextStream(tokenizer, prompt_ids, stop=("\\n\\n",))
    for token in tokens:
        piece = stream.push(token)   # text that is now certain ("" while held back)
        if stream.stopped:
            break
    piece = stream.flush()           # the end: what was held back for a possible stop string
"""

from __future__ import annotations

from collections.abc import Sequence

from attnlab.tokenizers import Tokenizer

# Tokens of context decoded before the new ones: enough for SentencePiece's leading space and
# for a multi-byte character split over several byte tokens.
CONTEXT_TOKENS = 5
INCOMPLETE = "\ufffd"


class TextStream:
    """The text of a growing list of generated tokens, given out piece by piece.

    Args:
        tokenizer: decodes ids (`Tokenizer.decode`).
        context_ids: ids before the first generated token (the prompt); only the last few are
            decoded, so that the first token's text is what it adds after them.
        stop: strings that end the text before their first occurrence (never shown).
    """

    def __init__(self, tokenizer: Tokenizer, context_ids: Sequence[int] = (),
                 stop: Sequence[str] = ()) -> None:
        if any(not isinstance(s, str) or not s for s in stop):
            raise ValueError(f"stop strings must be non-empty str, got {list(stop)!r}")
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self._ids = list(context_ids)[-CONTEXT_TOKENS:]
        self._prefix = 0  # start of the decoding window in _ids
        self._read = len(self._ids)  # tokens before this are already turned into text
        self.text = ""  # all text decoded so far (stop strings included, before the cut)
        self._given = 0  # characters of `text` handed out
        self.stopped = False  # a stop string was found: the text ends at `len(given text)`

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text that is now certain to be in the output."""
        if self.stopped:
            return ""
        self._ids.append(int(token_id))
        before = self.tokenizer.decode(self._ids[self._prefix:self._read])
        now = self.tokenizer.decode(self._ids[self._prefix:])
        if now.endswith(INCOMPLETE):
            return ""  # an unfinished character: its remaining bytes come with the next token
        self.text += now[len(before):]
        self._advance()
        return self._release()

    def _absorb_pending(self) -> None:
        """Decode tokens held for an unfinished character as they are (U+FFFD included)."""
        if self._read < len(self._ids):
            before = self.tokenizer.decode(self._ids[self._prefix:self._read])
            self.text += self.tokenizer.decode(self._ids[self._prefix:])[len(before):]
            self._advance()

    def _advance(self) -> None:
        self._prefix = max(0, len(self._ids) - CONTEXT_TOKENS)
        self._read = len(self._ids)
        # Keep only the window: the ids list does not grow with the output.
        if self._prefix > 4 * CONTEXT_TOKENS:
            self._ids = self._ids[self._prefix:]
            self._read -= self._prefix
            self._prefix = 0

    def _release(self, final: bool = False) -> str:
        """Text up to a stop string (then `stopped`), or up to a possible stop-string start
        (`final`: to the end)."""
        # Text before `_given` holds no start of a stop string (`_held_back` kept it), so the
        # search starts there.
        cut = min((i for i in (self.text.find(s, self._given) for s in self.stop) if i >= 0),
                  default=-1)
        if cut >= 0:
            self.stopped = True
            piece = self.text[self._given:cut]
            self._given = cut
            self.text = self.text[:cut]
            return piece
        end = len(self.text) - (0 if final else self._held_back())
        piece = self.text[self._given:end] if end > self._given else ""
        self._given = max(self._given, end)
        return piece

    def _held_back(self) -> int:
        """Characters at the end of `text` that could begin a stop string."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), longest, -1):
                if self.text.endswith(s[:n]):
                    longest = n
                    break
        return longest

    def flush(self) -> str:
        """At the end of generation: the text held back for a possible stop string or an
        unfinished character (which a model may never finish: it comes out as U+FFFD)."""
        if self.stopped:
            return ""
        self._absorb_pending()
        return self._release(final=True)

    @property
    def output(self) -> str:
        """All text handed out so far (without the stop string and anything after it)."""
        return self.text[: self._given]
