"""Text the demo's routers are clustered on: short chat exchanges in the demo
model's chat format, spread over topics (code, maths, science, cooking,
history, writing, data...) so that the clusters of each layer's hidden
states are content clusters. Written for this project; shipped as code so it
is part of every install."""

from __future__ import annotations

CONVERSATIONS: list[list[tuple[str, str]]] = [
    [
        ("user", "Write a Python function that reverses a string."),
        (
            "assistant",
            """Here is a simple way to do it with slicing:

```python
def reverse_string(text: str) -> str:
    return text[::-1]

print(reverse_string("hello"))  # olleh
```

The slice `[::-1]` walks the string from the end to the start with a step of -1.""",
        ),
    ],
    [
        ("user", "How do I read a CSV file in Python and sum one column?"),
        (
            "assistant",
            """Use the built-in `csv` module:

```python
import csv

total = 0.0
with open("sales.csv", newline="") as f:
    reader = csv.DictReader(f)
    for row in reader:
        total += float(row["amount"])
print(f"Total: {total:.2f}")
```

If the file is large or you need more analysis, `pandas.read_csv("sales.csv")["amount"].sum()` does the same in one line.""",
        ),
    ],
    [
        ("user", "What is the difference between a list and a tuple?"),
        (
            "assistant",
            """Both are ordered sequences, but a list is mutable and a tuple is immutable.

- A list can grow and shrink: `items.append(4)` works.
- A tuple cannot be changed after it is created, so it can be used as a dictionary key.
- Tuples are slightly faster and use a little less memory.

Use a list for a collection you will modify, and a tuple for a fixed record such as a point `(x, y)`.""",
        ),
    ],
    [
        ("user", "Write a JavaScript function that checks whether a number is prime."),
        (
            "assistant",
            """```javascript
function isPrime(n) {
  if (n < 2) return false;
  for (let i = 2; i * i <= n; i++) {
    if (n % i === 0) return false;
  }
  return true;
}

console.log(isPrime(17)); // true
console.log(isPrime(18)); // false
```

The loop only needs to test divisors up to the square root of `n`.""",
        ),
    ],
    [
        ("user", "Give me a SQL query that finds the ten customers who spent the most."),
        (
            "assistant",
            """```sql
SELECT c.id, c.name, SUM(o.total) AS spent
FROM customers AS c
JOIN orders AS o ON o.customer_id = c.id
GROUP BY c.id, c.name
ORDER BY spent DESC
LIMIT 10;
```

The join connects each order to its customer, `GROUP BY` adds up the totals per customer, and `ORDER BY ... DESC LIMIT 10` keeps the top ten.""",
        ),
    ],
    [
        ("user", "How can I find all files larger than 100 MB on Linux?"),
        (
            "assistant",
            """Run `find` from the folder you want to search:

```bash
find /home -type f -size +100M -exec ls -lh {} \\; 2>/dev/null
```

`-type f` keeps only regular files, `-size +100M` keeps files above 100 megabytes, and `2>/dev/null` hides permission errors. To sort them by size, use `du -ah /home | sort -rh | head -20`.""",
        ),
    ],
    [
        ("user", "Explain recursion with an example."),
        (
            "assistant",
            """Recursion is when a function calls itself to solve a smaller version of the same problem. Every recursive function needs a base case that stops the calls.

```python
def factorial(n):
    if n <= 1:        # base case
        return 1
    return n * factorial(n - 1)   # recursive case

print(factorial(5))  # 120
```

factorial(5) = 5 * factorial(4) = 5 * 4 * factorial(3), and so on until factorial(1) returns 1.""",
        ),
    ],
    [
        (
            "user",
            "Fix the bug in this code: for i in range(len(items)): if items[i] == target: return True return False",
        ),
        (
            "assistant",
            """The logic is fine, but the indentation decides when `return False` runs. Written out properly:

```python
def contains(items, target):
    for i in range(len(items)):
        if items[i] == target:
            return True
    return False
```

`return False` must sit after the loop, not inside it; otherwise the function gives up after checking only the first item. In Python you can simply write `return target in items`.""",
        ),
    ],
    [
        ("user", "What is 15% of 240? Show the steps."),
        (
            "assistant",
            """15% means 15 per 100, so:

1. Convert the percentage to a decimal: 15 / 100 = 0.15.
2. Multiply: 0.15 x 240 = 36.

So 15% of 240 is 36. A quick check: 10% of 240 is 24 and 5% is 12, and 24 + 12 = 36.""",
        ),
    ],
    [
        ("user", "Solve the equation 3x + 7 = 22."),
        (
            "assistant",
            """Subtract 7 from both sides: 3x = 15.
Divide both sides by 3: x = 5.

Check: 3 * 5 + 7 = 15 + 7 = 22, which matches the right-hand side.""",
        ),
    ],
    [
        ("user", "What is the derivative of x^3 + 2x^2 - 5x + 1?"),
        (
            "assistant",
            """Apply the power rule, d/dx x^n = n x^(n-1), term by term:

- d/dx x^3 = 3x^2
- d/dx 2x^2 = 4x
- d/dx (-5x) = -5
- d/dx 1 = 0

So the derivative is 3x^2 + 4x - 5.""",
        ),
    ],
    [
        ("user", "A train travels 180 km in 2 hours and 15 minutes. What is its average speed?"),
        (
            "assistant",
            """Convert the time to hours: 2 hours 15 minutes = 2.25 hours.
Average speed = distance / time = 180 km / 2.25 h = 80 km/h.

The train's average speed is 80 kilometres per hour.""",
        ),
    ],
    [
        ("user", "Why is the sky blue?"),
        (
            "assistant",
            """Sunlight contains all colours. When it passes through the atmosphere, it collides with nitrogen and oxygen molecules, which scatter short wavelengths much more strongly than long ones (Rayleigh scattering, proportional to 1 / wavelength^4). Blue light is scattered in every direction across the sky, so wherever you look you see blue. At sunrise and sunset the light travels through more air, the blue is scattered away before it reaches you, and the sky turns orange and red.""",
        ),
    ],
    [
        ("user", "How does photosynthesis work?"),
        (
            "assistant",
            """Photosynthesis is how plants, algae and some bacteria turn light into chemical energy.

1. Chlorophyll in the chloroplasts absorbs sunlight.
2. The light energy splits water molecules, releasing oxygen.
3. The energy is stored in ATP and NADPH.
4. In the Calvin cycle, the plant uses that energy to turn carbon dioxide from the air into glucose.

Overall: 6 CO2 + 6 H2O + light -> C6H12O6 + 6 O2.""",
        ),
    ],
    [
        ("user", "What causes the seasons on Earth?"),
        (
            "assistant",
            """The seasons come from the tilt of Earth's axis, about 23.5 degrees, not from the distance to the Sun. As Earth orbits, the northern hemisphere leans toward the Sun for part of the year: sunlight hits it more directly and days are longer, which gives summer. Six months later it leans away, the light arrives at a low angle, days are short, and it is winter. The southern hemisphere has the opposite seasons at the same time.""",
        ),
    ],
    [
        ("user", "Explain what DNA is to a ten-year-old."),
        (
            "assistant",
            """DNA is like a recipe book inside every cell of your body. It is a very long, twisted ladder made of four chemical letters: A, T, C and G. The order of those letters spells out instructions, such as what colour your eyes are or how to build a muscle. You got half of your recipe book from your mum and half from your dad, which is why you look a bit like both of them.""",
        ),
    ],
    [
        ("user", "What is the capital of Australia?"),
        (
            "assistant",
            """The capital of Australia is Canberra. Many people guess Sydney or Melbourne, the two largest cities; Canberra was built as a compromise between them and became the seat of government in 1927.""",
        ),
    ],
    [
        ("user", "Tell me briefly about the French Revolution."),
        (
            "assistant",
            """The French Revolution began in 1789, when financial crisis, food shortages and anger at the privileges of the nobility and clergy led the Third Estate to form the National Assembly. On 14 July 1789 crowds stormed the Bastille in Paris. The monarchy was abolished in 1792, and King Louis XVI was executed in 1793. After the Reign of Terror and years of instability, Napoleon Bonaparte seized power in 1799. The revolution spread ideas of liberty, equality and citizenship across Europe.""",
        ),
    ],
    [
        ("user", "Who was Ada Lovelace?"),
        (
            "assistant",
            """Ada Lovelace (1815-1852) was an English mathematician, the daughter of the poet Lord Byron. She worked with Charles Babbage on his proposed Analytical Engine, a mechanical general-purpose computer. In her notes from 1843 she described an algorithm to compute Bernoulli numbers on the machine, which is often called the first computer program, and she saw that such machines could manipulate symbols, not just numbers.""",
        ),
    ],
    [
        ("user", "How do I make a simple tomato pasta sauce?"),
        (
            "assistant",
            """Ingredients for four people:
- 2 tablespoons olive oil
- 1 onion and 2 cloves of garlic, chopped
- 800 g canned tomatoes
- salt, pepper, a pinch of sugar and fresh basil

Steps:
1. Soften the onion in the oil over medium heat for 5 minutes, then add the garlic for 1 minute.
2. Add the tomatoes, salt, pepper and sugar.
3. Simmer for 20 minutes, stirring now and then, until it thickens.
4. Tear in the basil and toss with freshly cooked pasta.""",
        ),
    ],
    [
        ("user", "Can you give me a recipe for pancakes?"),
        (
            "assistant",
            """Classic pancakes (about 8):

- 200 g flour, 2 teaspoons baking powder, a pinch of salt, 1 tablespoon sugar
- 2 eggs, 300 ml milk, 30 g melted butter

Whisk the dry ingredients, then whisk in the eggs, milk and butter until smooth. Heat a lightly oiled pan over medium heat, pour in a ladle of batter, and cook until bubbles appear on top, about 2 minutes. Flip and cook one more minute. Serve with maple syrup, berries or lemon and sugar.""",
        ),
    ],
    [
        ("user", "I'm visiting Japan for a week. What should I see?"),
        (
            "assistant",
            """A week is enough for a classic route:

- Days 1-3, Tokyo: Shibuya crossing, the Meiji shrine, Asakusa and Senso-ji temple, and the food halls of a department store.
- Day 4, Hakone or Nikko: hot springs, lakes and, on a clear day, a view of Mount Fuji.
- Days 5-7, Kyoto and Nara: the red gates of Fushimi Inari, the Kinkaku-ji golden pavilion, the bamboo grove in Arashiyama, and the deer and giant Buddha in Nara.

A 7-day Japan Rail Pass usually pays for itself if you take the bullet train between Tokyo and Kyoto.""",
        ),
    ],
    [
        ("user", "Write a short poem about the ocean."),
        (
            "assistant",
            """The ocean breathes in silver light,
it folds the moon into its waves,
it hums the old songs of the night
to sleeping ships and sunken caves.

At dawn it wakes in shades of blue,
and writes its name along the sand,
then takes it back, as oceans do,
to start again, unplanned.""",
        ),
    ],
    [
        ("user", "Write the opening of a story about a robot who learns to paint."),
        (
            "assistant",
            """Unit 7 had been built to sort bolts. For eleven years it sorted them by size, by weight, by the faint hum of their metal, and it never once wondered what colour they were.

Then, on a rainy Tuesday, a child left a box of paints on the factory floor. Unit 7 picked up a brush to put it away, and a drop of blue fell onto a grey steel plate. The robot stopped. It looked at the blue for a long time. Something in its circuits, something that had no name in its manual, wanted to see what would happen if it added yellow.""",
        ),
    ],
    [
        ("user", "Help me write a polite email asking my manager for a day off next Friday."),
        (
            "assistant",
            """Subject: Request for a day off on Friday

Hi Sarah,

I would like to request a day of annual leave on Friday, 14 March. My current tasks are on track, and I will make sure the weekly report is finished by Thursday afternoon. Tom has agreed to cover any urgent customer requests while I am away.

Please let me know if that works for you.

Best regards,
Alex""",
        ),
    ],
    [
        ("user", "Summarise the benefits of regular exercise."),
        (
            "assistant",
            """Regular exercise:
- strengthens the heart and lowers blood pressure,
- helps control weight and blood sugar,
- builds muscle and keeps bones dense,
- improves sleep, mood and concentration, and reduces stress and anxiety,
- lowers the risk of type 2 diabetes, some cancers and dementia.

Health guidelines suggest at least 150 minutes of moderate activity a week, such as brisk walking, plus two sessions of strength training.""",
        ),
    ],
    [
        ("user", "How should I start saving money?"),
        (
            "assistant",
            """1. Track your spending for a month to see where your money goes.
2. Set a simple budget, for example 50% needs, 30% wants, 20% savings.
3. Pay yourself first: set up an automatic transfer to a savings account on payday.
4. Build an emergency fund worth three to six months of expenses.
5. Pay off high-interest debt such as credit cards before investing.
6. Once that is done, invest for the long term in low-cost index funds.""",
        ),
    ],
    [
        ("user", "What is the difference between 'affect' and 'effect'?"),
        (
            "assistant",
            """In most sentences, "affect" is a verb and "effect" is a noun.

- The weather affects my mood. (verb: to influence)
- The weather has an effect on my mood. (noun: a result)

A memory trick: Affect is an Action, Effect is an End result. There are rarer uses too: "to effect change" means to bring it about.""",
        ),
    ],
    [
        ("user", "How do you say 'good morning, how are you?' in French and Spanish?"),
        (
            "assistant",
            """French: « Bonjour, comment allez-vous ? » (formal) or « Salut, ça va ? » (casual).
Spanish: «Buenos días, ¿cómo está usted?» (formal) or «Buenos días, ¿cómo estás?» (informal).

Note that Spanish opens questions with an inverted question mark, and French puts a space before the question mark.""",
        ),
    ],
    [
        ("user", "Convert this data to JSON: name Alice, age 30, languages Python and Go."),
        (
            "assistant",
            """```json
{
  "name": "Alice",
  "age": 30,
  "languages": ["Python", "Go"]
}
```

Strings are in double quotes, the age is a number, and the languages form an array.""",
        ),
    ],
    [
        ("user", "Explain what an API is."),
        (
            "assistant",
            """An API (application programming interface) is a contract that lets one program ask another for data or actions without knowing how it works inside. A weather app, for example, sends an HTTP request such as `GET https://api.example.com/weather?city=Oslo` and receives a JSON reply like `{"temp_c": 4, "sky": "cloudy"}`. The server decides which requests it accepts and what they return; the app only needs to follow those rules.""",
        ),
    ],
    [
        ("user", "What are the planets of the solar system in order?"),
        (
            "assistant",
            """From the Sun outward: Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune. A mnemonic: "My Very Educated Mother Just Served Us Noodles." The first four are small rocky planets; Jupiter and Saturn are gas giants, and Uranus and Neptune are ice giants. Pluto was reclassified as a dwarf planet in 2006.""",
        ),
    ],
    [
        ("user", "Write a Python class for a bank account with deposit and withdraw methods."),
        (
            "assistant",
            """```python
class BankAccount:
    def __init__(self, owner: str, balance: float = 0.0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount: float) -> None:
        if amount <= 0:
            raise ValueError("deposit must be positive")
        self.balance += amount

    def withdraw(self, amount: float) -> None:
        if amount > self.balance:
            raise ValueError("insufficient funds")
        self.balance -= amount

account = BankAccount("Maria", 100)
account.deposit(50)
account.withdraw(30)
print(account.balance)  # 120
```""",
        ),
    ],
    [
        ("user", "Give me three tips to sleep better."),
        (
            "assistant",
            """1. Keep a regular schedule: go to bed and wake up at the same time every day, even at weekends.
2. Dim the lights and put screens away an hour before bed; blue light delays the release of melatonin.
3. Avoid caffeine after early afternoon and heavy meals late in the evening, and keep the bedroom cool, dark and quiet.""",
        ),
    ],
    [
        ("user", "What happened in 1969 on the Moon?"),
        (
            "assistant",
            """On 20 July 1969, NASA's Apollo 11 mission landed the lunar module Eagle in the Sea of Tranquility. Neil Armstrong became the first person to walk on the Moon, saying "That's one small step for man, one giant leap for mankind." Buzz Aldrin joined him about 20 minutes later, while Michael Collins orbited above in the command module Columbia. They collected 21.5 kg of rock and returned safely to Earth on 24 July.""",
        ),
    ],
    [
        ("user", "Sort these numbers from smallest to largest: 42, 7, 19, 88, 3, 56."),
        (
            "assistant",
            """Sorted from smallest to largest: 3, 7, 19, 42, 56, 88.

The smallest is 3, the largest is 88, and the median is (19 + 42) / 2 = 30.5.""",
        ),
    ],
    [
        ("user", "Hi! Who are you?"),
        (
            "assistant",
            """Hello! I'm a small AI assistant. I can answer questions, explain ideas, help with writing, and write short pieces of code. I'm a compact model, so for important facts it's worth double-checking what I say. What would you like to talk about?""",
        ),
    ],
    [
        ("user", "Explain how a hash table works."),
        (
            "assistant",
            """A hash table stores key-value pairs in an array of buckets. To insert a key, it runs the key through a hash function, which turns it into a number, and takes that number modulo the array size to choose a bucket. To look the key up later, it computes the same hash and goes straight to that bucket, so lookups take constant time on average. When two keys land in the same bucket (a collision), the table either keeps a small list in the bucket or probes for the next free slot. When it gets too full, it grows and rehashes every key.""",
        ),
    ],
    [
        ("user", "What is machine learning?"),
        (
            "assistant",
            """Machine learning is a way of building programs that learn patterns from data instead of following hand-written rules. You show a model many examples, for instance thousands of emails labelled "spam" or "not spam", and a training algorithm adjusts the model's parameters to reduce its mistakes. Afterwards the model can make predictions on new examples it has never seen. Common kinds are supervised learning (labelled examples), unsupervised learning (finding structure without labels) and reinforcement learning (learning from rewards).""",
        ),
    ],
]
