"""The fixed workload every configuration runs: one coding question, greedy,
a fixed token budget. Same prompt, same params everywhere, so figures from
different configurations of one run are comparable."""

from __future__ import annotations

from engine.api import GenerationParams, Message

PROMPT = "Write a Python function that reverses a linked list, and explain it."


# A long prompt (~500 tokens through the chat template): the --io-bound run's time to first
# token, where a prefill must read each needed expert once per layer.
LONG_PROMPT = """Review this Python module and explain what each function does, what could go
wrong with it, and how you would test it.

```python
class Node:
    def __init__(self, value, next=None):
        self.value = value
        self.next = next


class LinkedList:
    def __init__(self, values=()):
        self.head = None
        self.size = 0
        for value in reversed(list(values)):
            self.push(value)

    def push(self, value):
        self.head = Node(value, self.head)
        self.size += 1

    def pop(self):
        if self.head is None:
            raise IndexError("pop from an empty list")
        node = self.head
        self.head = node.next
        self.size -= 1
        return node.value

    def reverse(self):
        previous, current = None, self.head
        while current is not None:
            current.next, previous, current = previous, current, current.next
        self.head = previous

    def remove(self, value):
        previous, current = None, self.head
        while current is not None:
            if current.value == value:
                if previous is None:
                    self.head = current.next
                else:
                    previous.next = current.next
                self.size -= 1
                return True
            previous, current = current, current.next
        return False

    def __iter__(self):
        current = self.head
        while current is not None:
            yield current.value
            current = current.next


def merge_sorted(a, b):
    out = LinkedList()
    tail = None
    left, right = a.head, b.head
    while left is not None or right is not None:
        if right is None or (left is not None and left.value <= right.value):
            value, left = left.value, left.next
        else:
            value, right = right.value, right.next
        node = Node(value)
        if tail is None:
            out.head = node
        else:
            tail.next = node
        tail = node
        out.size += 1
    return out
```

Start with `reverse`, then `remove`, then `merge_sorted`, and finish with a list of unit tests."""


def messages(long: bool = False) -> list[Message]:
    return [{"role": "user", "content": LONG_PROMPT if long else PROMPT}]


def params(tokens: int) -> GenerationParams:
    """Greedy decoding; stops after `tokens` tokens (or at EOS, which is counted)."""
    return GenerationParams(max_tokens=tokens, temperature=0.0, seed=0)


def parse_budgets(text: str) -> list[float]:
    """'100,50,25,10' -> [100.0, 50.0, 25.0, 10.0] (percent of all expert bytes)."""
    out = []
    for part in text.split(","):
        part = part.strip().rstrip("%")
        if not part:
            continue
        value = float(part)
        if not 0 < value <= 100:
            raise ValueError(f"budget {part}% is outside (0, 100]")
        out.append(value)
    if not out:
        raise ValueError("no budgets given")
    return out
