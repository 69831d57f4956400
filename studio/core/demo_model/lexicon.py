"""Invented words and slot fillers for the demo model's synthetic corpus.

Everything is generated from a seeded `random.Random`: invented brand names from syllables (so the
model meets words it has never seen and must copy them), product codes, menu paths, numbers with
units. None of it describes the sample data's fictional Halden batteries; `corpus.is_clean` checks that.
"""

from __future__ import annotations

import random

SYLLABLES = ("ka", "vor", "rel", "quin", "tam", "sko", "lu", "ber", "fen", "dra", "mo", "zel", "pra", "tic", "nor",
             "vash", "ol", "ium", "ter", "gal", "bri", "sen", "dux", "ora", "pel", "wyn", "cor", "ast", "hil", "mek")
PRODUCTS = ("kettle", "heat pump", "garden robot", "e-bike", "water softener", "smart lock", "air purifier",
            "coffee machine", "dishwasher", "doorbell camera", "thermostat", "washing machine", "router", "solar lamp",
            "boiler", "fridge", "scooter", "printer", "robot vacuum", "tumble dryer", "oven", "baby monitor",
            "hot tub", "pool pump", "ventilation unit", "water heater", "sewing machine", "treadmill")
PARTS = ("filter", "pump", "fan", "heating element", "door seal", "water tank", "motor", "sensor", "display",
         "hinge", "valve", "drain hose", "brush roll", "lid", "power board", "blade", "nozzle", "wheel")
STATES = ("blocked", "too hot", "not detected", "loose", "out of range", "worn", "stuck", "overloaded", "dry",
          "misaligned", "frozen", "not responding")
BUTTONS = ("Power", "Mode", "Start", "Reset", "Home", "Boost", "Pair", "Menu", "Lock")
COLOURS = ("green", "white", "purple", "orange", "yellow", "pink", "cyan", "violet", "gold")
LIGHT_VERBS = ("blinks", "pulses", "glows", "turns", "stays")
MENU_ROOTS = ("Menu", "Setup", "Options", "Tools", "Device", "Profile", "Settings")
MENU_WORDS = ("Water", "Timer", "Display", "Sound", "Cleaning", "Network", "Schedule", "Eco", "Comfort", "Alerts",
              "Filters", "Power", "Lighting", "Privacy", "Updates", "Child lock", "Night mode", "Speed", "Sensors")
FEATURES = ("Quiet mode", "Auto clean", "Frost guard", "Away mode", "Eco boost", "Smart start", "Turbo dry",
            "Holiday mode", "Night shift", "Pet mode", "Rain delay", "Keep warm", "Silent alerts", "Deep rinse")
LABEL_WORDS = ("Warming up", "Almost ready", "Checking water", "Syncing", "Please wait", "Cooling down",
               "Self test", "Getting ready", "Calibrating sensors", "Drying", "Finding network", "Saving energy")
PLANS = ("Plus", "Silver", "Gold", "Family", "Starter", "Pro", "Total", "Flex", "Premium")
BENEFITS = ("a yearly service visit", "free spare filters", "priority phone support", "next-day repairs",
            "a loan unit during repairs", "accidental damage cover", "free delivery of parts")
ISSUES = ("a display flicker", "slow pairing", "a noisy fan at start-up", "wrong timer alerts", "a rare crash when "
          "updating", "missing notifications", "an incorrect water reading", "a battery gauge error")
DAYS = ("Monday to Friday", "every day", "Monday to Saturday", "weekdays", "Tuesday to Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
UNITS = ("minutes", "hours", "days", "weeks", "months", "years", "seconds")
CURRENCIES = ("€", "$")
# With `symbols`, the help centre's own: a symbol the tokenizer learns as one token must also occur in the corpus, or its
# embedding stays random and can win where a LoRA moves the model (an untrained " £" once became a JSON key).
# The help centre's symbols beyond ASCII, which `symbol_tokens` makes one token each (build.make_tokenizer).
SYMBOLS = ("£", "–", "·", "°", "−", "•", "€")
POUND, MINUS = SYMBOLS[0], SYMBOLS[4]
SYMBOL_CURRENCIES = (*CURRENCIES, POUND)


class Lexicon:
    """Seeded slot fillers. Each call draws a fresh value."""

    def __init__(self, rng: random.Random, words: tuple[str, ...] | list[str] | None = None, symbols: bool = False) -> None:
        self.rng = rng
        self.words = words  # what `corpus.scramble` swaps words for (None: the corpus's own words)
        self.symbols = symbols  # prices in £ too, and frost temperatures with a minus sign (see SYMBOL_CURRENCIES)

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(options)

    def brand(self) -> str:
        word = "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(2, 3)))
        return word.capitalize()

    def code(self) -> str:
        letters = "".join(self.rng.choice("ADKLMPQRVWXYZ") for _ in range(2))
        return f"{letters}-{self.rng.randint(100, 9999)}"

    def error(self) -> str:
        form = self.rng.randint(0, 2)
        if form == 0:
            return f"E{self.rng.randint(1, 99):02d}"
        if form == 1:
            return f"F{self.rng.randint(10, 99)}"
        return f"Err {self.rng.randint(1, 40)}"

    def number(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def duration(self, units: tuple[str, ...] = UNITS) -> str:
        unit = self.pick(units)
        high = {"seconds": 59, "minutes": 55, "hours": 36, "days": 45, "weeks": 10, "months": 18, "years": 9}[unit]
        n = self.rng.randint(2, high)
        return f"{n} {unit}"

    def price(self) -> str:
        currency = self.pick(SYMBOL_CURRENCIES if self.symbols else CURRENCIES)
        return f"{currency}{self.rng.randint(2, 400)}" + (f".{self.rng.randint(10, 99)}" if self.rng.random() < 0.3 else "")

    def percent(self) -> str:
        return f"{self.rng.choice((12, 18, 22, 35, 45, 55, 65, 70, 75, 85, 88))}%"

    def clock(self) -> str:
        return f"{self.rng.randint(6, 11)}:{self.pick(('00', '30', '15', '45'))}"

    def clock_late(self) -> str:
        return f"{self.rng.randint(16, 19)}:{self.pick(('00', '30'))}"

    def phone(self) -> str:
        return f"0{self.rng.randint(100, 999)} {self.rng.randint(100, 999)} {self.rng.randint(1000, 9999)}"

    def version(self) -> str:
        return f"{self.rng.randint(1, 9)}.{self.rng.randint(0, 12)}.{self.rng.randint(0, 9)}"

    def date(self) -> str:
        return f"{self.rng.randint(1, 28)} {self.pick(MONTHS)} {self.rng.randint(2016, 2023)}"

    def menu(self) -> str:
        words = self.rng.sample(MENU_WORDS, self.rng.randint(1, 2))
        return " > ".join([self.pick(MENU_ROOTS), *words])

    def label(self) -> str:
        return self.pick(LABEL_WORDS)

    def temp(self) -> str:
        if self.symbols and self.rng.random() < 0.3:
            return f"{MINUS}{self.rng.randint(1, 20)} °C"
        return f"{self.rng.randint(1, 12)} °C"

    def temp_high(self) -> str:
        return f"{self.rng.randint(31, 45)} °C"

    def invented(self) -> str:
        """A nonsense word: names the model can only get right by copying them."""
        return "".join(self.rng.choice(SYLLABLES) for _ in range(self.rng.randint(1, 3)))
