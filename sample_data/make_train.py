"""Generate sample_data/train.jsonl: generic support conversations answered in the house JSON format.

    python sample_data/make_train.py               # rewrites sample_data/train.jsonl
    python sample_data/make_train.py --out FILE    # writes somewhere else (the tests compare the two)

Every example is a chat in `messages` format: a system prompt (the house one, which describes the format, on
a quarter of them; a short persona that does not on the rest), a customer question and an assistant
reply that is a JSON object {"answer": str, "steps": [str, ...], "escalate": bool}; a few are two-turn
conversations, and a fifth ask about a product's own specifics (a code, a light, a price, a limit), which
only its documents could answer: the reply says it doesn't have them and where to look. Besides those, a third
more ask over the studio's RAG prompt, with generic passages as the context, and quote passage [1] in "answer". The questions are *generic* home-energy, device, app, account, billing, delivery and safety
questions, built by combining templates (situations, phrasings, devices, openers, context), so a fine-tune
learns the format, the tone (warm, brief, plain English) and when to escalate, but none of the facts of
`sample_data/docs/`: no brand or product names, no error codes, prices, dates, menu paths or phone numbers,
and no digits but the RAG prompt's passage numbers. The output is deterministic (fixed seed), so the committed file can be checked.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

SEED = 6
COUNT = 580  # examples in all
MULTI_TURN = 34  # of which two-turn conversations (under 10%)
SPECIFIC = 120  # of which questions about a product's specifics, answered without them (see SPECIFICS)
GROUNDED = 350  # and, besides those, questions asked over the studio's RAG prompt (see grounded_examples)
OUT = Path(__file__).resolve().parent / "train.jsonl"

SYSTEM_PROMPT = (
    'You are the support assistant of a home-energy company. Reply only with a JSON object '
    '{"answer": "...", "steps": ["..."], "escalate": true|false}: "answer" is a short, warm reply in plain '
    'English, "steps" lists what the customer should do (empty if there is nothing to do), and "escalate" is '
    'true only when a person (our support team, an engineer or the emergency services) has to act.'
)
# Most examples carry a short persona instead, which says nothing of the format: the house format has to
# live in the adapter's weights, so the tuned model keeps it whatever system prompt it is given, or none
# (the held-out evaluation asks with none). A format-describing prompt alone is the prompting baseline.
SHORT_PROMPTS = [
    "You are the support assistant of a home-energy company.",
    "You are a friendly customer-support assistant for a home-energy company.",
    "You answer customers' questions about their home-energy devices, apps and accounts.",
    "Help the customer.",
]
FULL_SHARE = 0.25  # of the examples that get SYSTEM_PROMPT

# Devices --------------------------------------------------------------------------------------------
SMART = ["router", "thermostat", "smart speaker", "smart plug", "home hub", "doorbell camera",
         "energy monitor", "smart meter display", "heat pump controller", "solar inverter"]
POWERED = ["charger", "unit", "fan heater", "dehumidifier", "inverter", "EV charger", "heat pump",
           "smart speaker", "router", "tumble dryer", "freezer"]
RECHARGEABLE = ["power bank", "cordless vacuum", "portable speaker", "e-bike battery", "handheld fan",
                "cordless drill"]
CHARGING = ["EV charger", "phone charger", "charging dock", "power bank", "cordless vacuum", "unit",
            "laptop charger"]
WIRED = ["charger", "extension lead", "fan heater", "kettle", "hair dryer", "lamp", "dehumidifier",
         "unit"]

# Generic phrases ---------------------------------------------------------------------------------------
GREETINGS = ["", "", "", "", "Hi. ", "Hello. ", "Hi there. ", "Good morning. ", "Hello, hoping you can help. ",
             "Quick one. ", "Sorry to bother you. ", "Evening. ", "Hey. "]
URGENT_GREETINGS = ["", "", "Help! ", "Urgent: ", "Please help. ", "Hi, this is urgent. "]
ASKS = ["", "What can I do?", "Any ideas?", "How do I fix it?", "Can you help?", "What should I try?",
        "Is there something I can do?", "What do you suggest?", "Where do I start?"]
URGENT_ASKS = ["", "What do I do?", "What should I do?", "Is this dangerous?", "What now?"]
PROBLEM_CONTEXT = ["", "", "", " It started yesterday.", " This has been going on for a few days.",
                   " I haven't changed anything.", " It was fine last week.", " It happens most evenings.",
                   " My partner noticed it first.", " I'm not very technical.",
                   " It only started after the weekend.", " It's getting a bit annoying."]

OPENERS = {
    "problem": ["", "", "Sorry to hear that.", "Sorry about that, let's get it sorted.",
                "Thanks for letting us know.", "That sounds frustrating, but it's usually easy to fix.",
                "Let's get this working again.", "Sorry for the hassle.", "Thanks for getting in touch."],
    "howto": ["", "", "Happy to help.", "Good question.", "No problem.", "Sure thing.",
              "Happy to walk you through it.", "Of course."],
    "info": ["", "", "", "Good question.", "Thanks for asking.", "Happy to explain."],
    "safety": ["", "Please treat this as urgent.", "Your safety comes first.", "Please act on this straight away.",
               "Thank you for telling us quickly."],
    "escalate": ["", "Sorry about this.", "Thanks for telling us.", "I'm sorry you've had this trouble.",
                 "Sorry, that isn't the experience we want you to have.", "Thanks for getting in touch."],
    "specifics": ["", "", "Good question.", "Thanks for asking.", "Sorry,"],
}
CLOSERS = {
    "problem": ["", "", "", "If that doesn't help, just get back in touch.", "Let us know how you get on.",
                "If it keeps happening, reply here and we'll look into it."],
    "howto": ["", "", "", "Let us know if you get stuck.", "Shout if anything isn't clear."],
    "info": ["", "", "", "Let us know if you have any other questions."],
    "safety": ["", ""],
    "escalate": ["", "", "We'll keep you updated.", "We'll be in touch as soon as we can."],
    "specifics": ["Your manual or our help centre will have the answer.", "The user guide should say, or our team can "
                  "check it for you.", "Our support team can tell you.", "The help centre article for your model "
                  "lists it.", ""],
}

# Topics: kind (problem/howto/info/safety/escalate), escalate flag, devices (None = no device), question
# stems (problem and safety stems are statements followed by a context and an ask; the others are
# questions, optionally after a context sentence), answer cores, ordered steps (a subset is used, in order)
# and the range of how many steps to use.
T = dict  # short alias for the table below

TOPICS = [
    # App and connectivity --------------------------------------------------------------------------------
    T(id="app_login", kind="problem", esc=False, dev=None,
      q=["I can't log in to the app.", "The app keeps telling me my password is wrong.",
         "The app won't let me sign in any more.", "I'm locked out of the app.",
         "Every time I try to sign in, the app just spins."],
      a=["Most sign-in problems come from a saved password that is out of date or an old version of the app.",
         "This is usually a stale saved password or an app that needs updating, and both are quick to fix."],
      s=["Check you're using the email address you signed up with.",
         "Tap \"Forgot password\" and follow the link we email you.",
         "Update the app from your phone's app store.",
         "Close the app fully, then open it again and sign in.",
         "If you still can't get in, try signing in on our website to check the account itself is fine."],
      k=(2, 5)),
    T(id="wifi_drop", kind="problem", esc=False, dev=SMART,
      q=["My {d} keeps dropping off the Wi-Fi.", "The {d} loses its internet connection every few hours.",
         "My {d} keeps disconnecting from the network.", "The {d} goes offline at random."],
      a=["Drop-outs are nearly always down to the Wi-Fi signal or the router rather than the {d} itself.",
         "When a device keeps falling off the network, weak signal is the usual cause, so let's start there."],
      s=["Restart your router and wait until it's fully back online.",
         "If you can, move the router and the {d} closer together, away from thick walls and metal.",
         "Check the {d} is joined to your main network, not a guest network.",
         "Forget the network on the {d} and join it again with the current password.",
         "If it still drops out, a Wi-Fi extender near the {d} usually solves it."],
      k=(2, 5)),
    T(id="new_router", kind="howto", esc=False, dev=[d for d in SMART if d != "router"],
      ctx=["", "", "My broadband provider just sent a replacement router.", "We've switched internet provider."],
      q=["How do I get my {d} back on the Wi-Fi after changing router?",
         "I've got a new router. How do I reconnect the {d}?",
         "What do I need to do so my {d} works with the new router?"],
      a=["A new router usually means a new network name or password, so the {d} just needs to be told about it.",
         "The {d} is still looking for your old network, so it needs the new details."],
      s=["Find the network name and password, usually on a sticker on the new router.",
         "Open the app and choose the {d} from your device list.",
         "Pick the option to change Wi-Fi and select your new network.",
         "Enter the password carefully; it is case-sensitive.",
         "Wait a minute or two for the {d} to show as online."],
      k=(3, 5)),
    T(id="offline", kind="problem", esc=False, dev=SMART,
      q=["The app says my {d} is offline, but it's definitely switched on.",
         "My {d} shows as offline in the app.", "The app can't see my {d} any more."],
      a=["If the {d} has power but shows offline, it has usually lost its link to the internet rather than failed.",
         "An offline device with power is almost always a network problem, not a fault with the {d}."],
      s=["Check other devices in your home can get online.",
         "Turn the {d} off at the wall, wait a minute and turn it back on.",
         "Restart your router.",
         "Pull down to refresh the app and give it a few minutes."],
      k=(1, 4)),
    T(id="app_crash", kind="problem", esc=False, dev=None,
      q=["The app crashes as soon as I open it.", "The app keeps closing on its own.",
         "The app freezes on the loading screen.", "The app is really slow and sometimes just shuts."],
      a=["That's normally fixed by updating or reinstalling the app; your account and settings are stored "
         "safely with us, not on your phone.",
         "A crashing app is usually an old version or a corrupted download, and a reinstall sorts it."],
      s=["Update the app from your app store.", "Restart your phone.",
         "Delete the app and install it again, then sign back in.",
         "Check your phone has a recent system update installed."],
      k=(1, 4)),
    T(id="notifications", kind="howto", esc=False, dev=None,
      ctx=["", "", "I'm getting far too many alerts.", "My phone buzzes all night."],
      q=["How do I turn off notifications from the app?", "Can I choose which alerts the app sends me?",
         "How do I stop the app sending me so many messages?"],
      a=["You can choose which notifications you get, so you only hear about the things that matter to you.",
         "You're in control of the alerts; we'd suggest keeping safety alerts on and turning the rest down."],
      s=["Open the app's settings and look for notifications.",
         "Switch off the alert types you don't want.",
         "Leave safety and fault alerts switched on.",
         "If alerts still come through, check your phone's own notification settings for the app."],
      k=(1, 4)),
    T(id="pairing", kind="howto", esc=False, dev=SMART,
      ctx=["", "", "I've just unboxed it.", "It's a replacement for an old one."],
      q=["How do I pair my {d} with the app?", "How do I add a new {d} to my account?",
         "The app can't find my new {d}. How do I connect it?", "How do I set up the {d} in the app?"],
      a=["Pairing only takes a few minutes, as long as your phone and the {d} are close together.",
         "Setting up a new {d} is quick; the app guides you through most of it."],
      s=["Make sure Bluetooth and Wi-Fi are on and stand next to the {d}.",
         "Put the {d} into pairing mode, as shown in its quick-start guide.",
         "Open the app and choose to add a new device.",
         "Follow the prompts and enter your Wi-Fi password when asked.",
         "If it isn't found, restart the {d} and try again."],
      k=(2, 5)),
    T(id="share_access", kind="howto", esc=False, dev=None,
      ctx=["", "", "My partner wants to check things too.", "I'd like my son to help manage it."],
      q=["How do I give someone else access to my account?", "Can two people use the app on one account?",
         "How do I add a family member to the app?"],
      a=["The safest way is to invite them as a household member, so they get their own sign-in and you never "
         "need to share your password.",
         "You can invite other people to your household, and each person signs in with their own details."],
      s=["Open the app's settings and find the household or members section.",
         "Send an invite to their email address.",
         "Ask them to accept it and create their own password."],
      k=(1, 3)),
    T(id="update_device", kind="howto", esc=False, dev=SMART,
      ctx=["", "", "A friend said there's a newer version out.", "I want to make sure everything's up to date."],
      q=["How do I update the software on my {d}?", "How can I tell if my {d} is up to date?",
         "Do I need to update my {d} myself?"],
      a=["Most devices update themselves overnight when they're online, so there's usually nothing to do.",
         "Updates normally install automatically while the {d} is connected, but you can check for one."],
      s=["Keep the {d} powered and connected to the internet.",
         "Open the {d}'s page in the app and look for a software or version section.",
         "If an update is waiting, start it and leave the {d} alone until it finishes."],
      k=(0, 3)),
    T(id="update_stuck", kind="problem", esc=False, dev=SMART,
      ctx=["", "", "It started this morning.", "I don't want to break it.", "The screen is still on."],
      q=["The update on my {d} seems to be stuck.", "My {d} has been updating for ages.",
         "The progress bar on the {d} update hasn't moved in a long time."],
      a=["Updates can take longer than expected on a slow connection, so it's worth giving it a little longer "
         "before stepping in.",
         "An update that seems stuck is usually just slow; interrupting it too early can cause more trouble."],
      s=["Leave it alone for another half an hour or so.",
         "Check your internet connection is working on another device.",
         "If nothing has changed, turn the {d} off at the wall, wait a minute and turn it back on.",
         "It will normally try the update again by itself."],
      k=(2, 4)),
    # Devices ---------------------------------------------------------------------------------------------
    T(id="humming", kind="problem", esc=False, dev=POWERED,
      q=["My {d} is making a humming noise.", "The {d} has started buzzing.",
         "There's a low hum coming from the {d}.", "The {d} is noisier than it used to be."],
      a=["A soft hum is normal for many electrical devices, especially when they're working hard. A loud "
         "buzz, rattle or grinding that's new is worth checking.",
         "Some humming is perfectly normal, but it shouldn't be loud or getting worse."],
      s=["Check the {d} is standing firmly on a level surface and nothing is touching it.",
         "Make sure the vents are clear of dust and clutter.",
         "Note when the noise happens, for example only at night or when it's busy.",
         "If you also notice a burning smell or heat, switch it off at the wall and contact us."],
      k=(1, 4)),
    T(id="warm", kind="info", esc=False, dev=POWERED + CHARGING,
      ctx=["", "", "I just touched it by accident.", "I noticed it while dusting."],
      q=["Is it normal for my {d} to feel warm?", "Should the {d} get warm when it's running?",
         "Why does my {d} feel warm to the touch?"],
      a=["Yes, feeling warm is normal while the {d} is working. It should never be too hot to keep your hand "
         "on, smell of burning or show scorch marks.",
         "A bit of warmth is expected from most electrical equipment. Too hot to touch is not, and then you "
         "should switch it off and get in touch."],
      s=["Keep the area around the {d} clear so air can flow.",
         "If it's too hot to touch, switch it off at the wall and contact us."],
      k=(0, 2)),
    T(id="wont_turn_on", kind="problem", esc=False, dev=POWERED,
      q=["My {d} won't turn on.", "The {d} is completely dead.", "Nothing happens when I press the power "
         "button on the {d}.", "The {d} has no lights at all."],
      a=["Let's rule out the power supply first, as that's the most common cause.",
         "Most of the time a device that seems dead isn't getting power, so we'll check that before anything else."],
      s=["Plug something else into the same socket to check it works.",
         "Check your fuse box in case a switch has tripped.",
         "Unplug the {d}, wait a minute and plug it back in.",
         "Hold the power button down for a few seconds.",
         "If it still won't start, contact us and we'll arrange the next step."],
      k=(2, 5)),
    T(id="light_meaning", kind="howto", esc=False, dev=SMART + ["charger", "unit"],
      ctx=["", "", "I've never seen it do that before.", "It started after I moved it."],
      q=["There's a flashing light on my {d}. What does it mean?", "What do the coloured lights on the "
         "{d} mean?", "Why is the light on my {d} a different colour today?"],
      a=["Status lights mean different things on different devices, so the quick-start guide is the best place "
         "to check. A steady light is usually fine; a flashing one often means it's waiting for something.",
         "The lights are the {d}'s way of telling you what it's doing. Most patterns are harmless."],
      s=["Look up the pattern in the quick-start guide or the device page in the app.",
         "Check the app for any message about the {d}.",
         "If the light shows a fault and stays that way, restart the {d}."],
      k=(1, 3)),
    T(id="not_charging", kind="problem", esc=False, dev=CHARGING + RECHARGEABLE,
      q=["My {d} isn't charging.", "The {d} stopped charging halfway.", "The {d} says it's charging but the "
         "level never goes up.", "My {d} charges really slowly now."],
      a=["Charging trouble is usually the cable, the socket or the temperature, so let's check those first.",
         "Before anything else, let's make sure the power is getting through."],
      s=["Try a different socket, and avoid extension leads for now.",
         "Check the cable and plug for damage; stop using it if you find any.",
         "Make sure the {d} isn't very cold or very hot, as charging slows down or pauses then.",
         "Unplug everything, wait a minute and reconnect firmly.",
         "If it still won't charge, get in touch so we can check it for you."],
      k=(2, 5)),
    T(id="cleaning", kind="howto", esc=False, dev=POWERED + SMART,
      ctx=["", "", "It's got quite dusty.", "We're spring cleaning."],
      q=["How should I clean my {d}?", "What's the safest way to clean the {d}?",
         "Can I use a spray cleaner on my {d}?"],
      a=["A gentle dry clean is all it needs. Please keep water and sprays away from anything electrical.",
         "Keep it simple: a dry cloth and a soft brush do the job safely."],
      s=["Switch the {d} off and unplug it first.",
         "Wipe the outside with a soft, dry cloth.",
         "Use a vacuum brush gently on any vents.",
         "Never use water, sprays or solvents on it.",
         "Plug it back in once it's completely dry and clean."],
      k=(2, 5)),
    T(id="factory_reset", kind="howto", esc=False, dev=SMART,
      ctx=["", "", "I'm giving it to my sister.", "Nothing else has worked."],
      q=["How do I reset my {d} to factory settings?", "Can I wipe the {d} and start again?",
         "How do I do a full reset on the {d}?"],
      a=["A factory reset clears all your settings from the {d}, so it's best kept as a last resort.",
         "You can, but it wipes everything on the {d}, including its Wi-Fi details."],
      s=["Write down any settings you want to keep.",
         "Find the reset button or option in the quick-start guide.",
         "Hold it until the {d} restarts.",
         "Set the {d} up again in the app as if it were new."],
      k=(1, 4)),
    T(id="heating_schedule", kind="howto", esc=False, dev=["thermostat", "heating controller"],
      ctx=["", "", "I work shifts.", "We've just moved in."],
      q=["How do I set a heating schedule on my {d}?", "Can I make the {d} warm the house before I get up?",
         "How do I change the times the heating comes on?"],
      a=["A schedule lets the {d} warm the house for when you need it and save energy when you don't.",
         "You can set different times for different days, so the heating fits your routine."],
      s=["Open the {d} in the app and go to its schedule.",
         "Add a period for each time you want the heating on.",
         "Set a comfortable temperature for each period and a lower one for nights and time away.",
         "Save the schedule and check the next change shows correctly."],
      k=(2, 4)),
    T(id="temp_wrong", kind="problem", esc=False, dev=["thermostat", "heating controller", "room sensor"],
      q=["My {d} says it's warmer than the room feels.", "The temperature on the {d} doesn't match the room.",
         "The {d} reading seems wrong."],
      a=["Thermostats read the air right around them, so where they're placed makes a big difference.",
         "This is usually about placement rather than a fault."],
      s=["Check the {d} isn't in direct sunlight or near a radiator, lamp or draught.",
         "Compare it with a separate thermometer placed next to it for an hour.",
         "If you can, move the {d} to an inside wall at about chest height."],
      k=(1, 3)),
    T(id="placement", kind="info", esc=False, dev=SMART + ["dehumidifier"],
      ctx=["", "", "We're rearranging the living room.", "I've just bought one."],
      q=["Where's the best place to put my {d}?", "Does it matter where I put the {d}?",
         "Can I keep the {d} in a cupboard?"],
      a=["Somewhere central, dry and open works best: away from heat, water and thick walls, with space "
         "around it for air.",
         "It does matter. Cupboards and corners can block both signal and airflow, so an open shelf is better."],
      s=["Keep it off the floor and away from radiators and windows.",
         "Leave a little space around it so it doesn't overheat."],
      k=(0, 2)),
    T(id="after_power_cut", kind="problem", esc=False, dev=SMART + POWERED,
      ctx=["", "", "It was quite a long one.", "Everything else came back fine.", "The whole street was off."],
      q=["We had a power cut and now my {d} isn't working properly.",
         "Since the power came back, the {d} has been acting strangely.",
         "After the outage last night my {d} won't reconnect."],
      a=["Devices sometimes get confused when the power drops suddenly, and a clean restart usually sorts it.",
         "After a power cut things can come back in the wrong order, so let's restart them in the right one."],
      s=["Check the power is fully back and nothing has tripped in your fuse box.",
         "Restart your router first and wait until it's online.",
         "Then turn the {d} off at the wall, wait a minute and turn it on again.",
         "Check the time and settings on the {d} are still correct."],
      k=(2, 4)),
    T(id="error_message", kind="problem", esc=False, dev=SMART + POWERED,
      q=["My {d} is showing an error message I don't recognise.", "A warning popped up about the {d}.",
         "The {d} is showing a fault."],
      a=["Most messages clear with a restart, and the exact wording helps us if it doesn't.",
         "Let's capture the message first, then try the simple fix."],
      s=["Write down or screenshot the exact message.",
         "Restart the {d} and see whether the message comes back.",
         "Search the help pages for the message.",
         "If it returns, contact us with the message so we can look it up."],
      k=(2, 4)),
    T(id="tripping", kind="escalate", esc=True, dev=POWERED,
      q=["My {d} keeps tripping the electrics.", "Every time I switch on the {d}, the fuse box trips.",
         "The power goes off in the house whenever the {d} starts up."],
      a=["Please stop using the {d} for now. Repeated tripping means something is wrong and it needs to be "
         "checked by a qualified electrician or one of our engineers, so I'm passing this to our team.",
         "That's your electrics protecting you, so please don't keep resetting it. The {d} needs a person to "
         "check it, and our team will arrange that."],
      s=["Unplug the {d} and leave it switched off.",
         "Reset the switch in the fuse box once, with the {d} unplugged.",
         "Don't use the {d} again until it has been checked."],
      k=(1, 3)),
    # Safety ----------------------------------------------------------------------------------------------
    T(id="burning_smell", kind="safety", esc=True, dev=POWERED + WIRED,
      q=["I can smell burning near my {d}.", "There's a hot plastic smell coming from the {d}.",
         "The {d} smells like something is burning."],
      a=["Switch the {d} off at the wall if you can do it safely, and keep away from it.",
         "Please stop using the {d} now and switch it off at the wall if that's safe."],
      s=["Switch the {d} off at the wall only if you can reach it safely.",
         "Don't touch it if it's hot, smoking or melting.",
         "If you see smoke or flames, get everyone out and call the emergency services.",
         "Once everyone is safe, contact us so an engineer can inspect the {d} before it's used again."],
      k=(3, 4)),
    T(id="smoke_sparks", kind="safety", esc=True, dev=POWERED + WIRED,
      q=["There's smoke coming from my {d}!", "I saw sparks when I plugged in my {d}.",
         "The socket the {d} is plugged into is scorched."],
      a=["This is an emergency. Get everyone away from the {d} and out of the building if there's smoke.",
         "Please treat this as dangerous: keep everyone clear and don't try to deal with it yourself."],
      s=["Get everyone out of the room, or out of the building if the smoke is spreading.",
         "Call the emergency services if there is smoke or fire.",
         "Only switch off at the fuse box if you can reach it without going near the {d}.",
         "Don't use the {d} or that socket again until it has been checked by a qualified person."],
      k=(2, 4)),
    T(id="water", kind="safety", esc=True, dev=POWERED + SMART,
      q=["Water has leaked onto my {d}.", "The {d} got wet when a pipe burst.",
         "Rain came in and the {d} is soaked."],
      a=["Water and electricity are a dangerous mix, so please don't touch the {d}.",
         "Please keep away from the {d} for now, even if it still seems to work."],
      s=["Don't touch the {d} or its plug while it's wet.",
         "If the fuse box is somewhere dry and easy to get to, switch the power off there; otherwise leave it.",
         "Leave the {d} unplugged and let us know, so it can be checked by a qualified person before it's "
         "used again."],
      k=(2, 3)),
    T(id="damaged_cable", kind="safety", esc=True, dev=WIRED,
      q=["The cable on my {d} is frayed and I can see the wires.", "The plug on the {d} is cracked.",
         "Our dog chewed through the {d} lead."],
      a=["A damaged cable can give an electric shock, so please stop using the {d} straight away.",
         "Please don't use the {d} again until the cable has been replaced by someone qualified."],
      s=["Switch off at the wall and unplug the {d} by the plug, not the cable.",
         "Don't tape the cable up or try to repair it yourself.",
         "Contact us and we'll arrange a safe replacement."],
      k=(2, 3)),
    T(id="swollen", kind="safety", esc=True, dev=RECHARGEABLE,
      q=["The case of my {d} is bulging.", "My {d} has swollen up and won't sit flat.",
         "The {d} looks puffy and the seams are splitting."],
      a=["A swollen battery can overheat, so please stop charging and using the {d} now.",
         "Please treat a bulging battery as unsafe and stop using the {d} today."],
      s=["Unplug it and don't charge it again.",
         "Put it somewhere cool and away from anything that burns, such as outside on a hard surface.",
         "Don't press, puncture or throw it in the bin.",
         "Contact us so we can arrange a safe collection or replacement."],
      k=(2, 4)),
    T(id="shock", kind="safety", esc=True, dev=POWERED + WIRED,
      q=["I got a small shock when I touched my {d}.", "My hand tingled when I touched the {d}.",
         "The metal on the {d} gave me a jolt."],
      a=["Please don't touch the {d} again. Even a small shock means something is wrong and a person needs to "
         "check it. If you feel unwell at all, seek medical advice.",
         "A shock of any size isn't normal, so the {d} needs to be checked by a qualified electrician."],
      s=["Switch off at the wall or the fuse box without touching the {d}.",
         "Keep children and pets away from it.",
         "Contact us and we'll arrange for someone to check it."],
      k=(2, 3)),
    # Billing and account ---------------------------------------------------------------------------------
    T(id="billing_address", kind="howto", esc=False, dev=None,
      ctx=["", "", "I've just moved.", "My bank has my new address already."],
      q=["How do I update my billing address?", "Can I change the address on my bills?",
         "Where do I change my billing details?"],
      a=["You can change your billing address yourself in your account in a couple of minutes.",
         "Updating your billing address is quick to do from your account."],
      s=["Sign in to your account in the app or on our website.",
         "Open your account or billing details.",
         "Edit the billing address and save it.",
         "Check the confirmation email we send you."],
      k=(2, 4)),
    T(id="payment_card", kind="howto", esc=False, dev=None,
      ctx=["", "", "My old card has expired.", "I've got a new bank account."],
      q=["How do I change the card I pay with?", "Can I switch my payments to a different card?",
         "How do I update my payment details?"],
      a=["You can swap your payment card at any time, and the next payment will use the new one.",
         "Changing your payment details takes a minute in your account."],
      s=["Sign in to your account.", "Go to the payment section.",
         "Add the new card and set it as your default.",
         "Remove the old card if you no longer use it."],
      k=(2, 4)),
    T(id="double_charge", kind="escalate", esc=True, dev=None,
      q=["I've been charged twice this month.", "There are two identical payments to you on my bank statement.",
         "You've taken my payment twice."],
      a=["Sorry about that. A double payment needs our billing team to check and refund it, so I've passed "
         "this to them.",
         "I'm sorry for the worry. Our billing team will look into the duplicate payment and refund anything "
         "taken by mistake."],
      s=["Keep a note or screenshot of both payments.",
         "Reply with the dates and amounts if you can.",
         "There's no need to cancel your payment method."],
      k=(1, 3)),
    T(id="refund_request", kind="escalate", esc=True, dev=None,
      ctx=["", "", "It wasn't what I expected.", "I changed my mind."],
      q=["I'd like a refund for my order.", "Can I get my money back?",
         "How do I ask for a refund?"],
      a=["Refunds are handled by our team, who will check your order and confirm what you'll get back.",
         "I'll pass your refund request to our team so they can look at your order."],
      s=["Keep the item and its packaging for now.",
         "Have your order number ready.",
         "Wait for our team to confirm how to send it back."],
      k=(1, 3)),
    T(id="invoice", kind="howto", esc=False, dev=None,
      ctx=["", "", "I need it for my records.", "My accountant has asked for it."],
      q=["Where can I find a copy of my invoice?", "How do I download my bills?",
         "Can I get an old invoice?"],
      a=["All your invoices are kept in your account, and you can download them whenever you like.",
         "You can view and download past invoices from your account."],
      s=["Sign in to your account.", "Open the billing or documents section.",
         "Choose the invoice and download it."],
      k=(1, 3)),
    T(id="bill_higher", kind="problem", esc=False, dev=None,
      ctx=["", "", "We haven't used more than normal.", "Nothing has changed at home.", "We were away for a week."],
      q=["My bill is much higher than usual.", "This month's bill looks wrong.",
         "I've been charged more than I expected."],
      a=["Higher bills are often down to colder weather, an estimated reading or a change in price, so it's "
         "worth checking those first.",
         "Let's look at the usual reasons a bill goes up before assuming something's wrong."],
      s=["Check whether the bill uses an estimated reading.",
         "Compare your usage with the same month last year.",
         "Send us an up-to-date meter reading if it's estimated.",
         "If it still looks wrong, reply and our team will check it."],
      k=(2, 4)),
    T(id="cancel", kind="howto", esc=False, dev=None,
      ctx=["", "", "I don't use it much any more.", "Money is a bit tight at the moment."],
      q=["How do I cancel my subscription?", "Can I stop my monthly plan?",
         "How do I end my service plan?"],
      a=["Sorry to see you go. You can cancel from your account, and we'll confirm the end date by email.",
         "You can cancel at any time from your account."],
      s=["Sign in and open your plan details.", "Choose the option to cancel and confirm.",
         "Keep the confirmation email for your records."],
      k=(1, 3)),
    T(id="change_email", kind="howto", esc=False, dev=None,
      ctx=["", "", "I don't use my old email any more.", ""],
      q=["How do I change the email address on my account?", "Can I use a different email to sign in?"],
      a=["You can change your email address in your account settings; we'll ask you to confirm the new one.",
         "Changing your email is easy, and you'll sign in with the new address afterwards."],
      s=["Sign in and open your profile.", "Enter the new email address and save.",
         "Click the confirmation link we send to the new address."],
      k=(2, 3)),
    T(id="hacked", kind="escalate", esc=True, dev=None,
      q=["I think someone else has got into my account.", "I got an email about a sign-in I didn't make.",
         "My account details have been changed and it wasn't me."],
      a=["Thank you for telling us quickly. Our team needs to secure your account, so I'm passing this to "
         "them now.",
         "Let's protect your account straight away; a member of our team will check it and help you secure it."],
      s=["Change your password now, using one you don't use anywhere else.",
         "Sign out of the app on any devices you don't recognise.",
         "Don't reply to any messages asking for your password or bank details."],
      k=(1, 3)),
    T(id="delete_data", kind="escalate", esc=True, dev=None,
      q=["Please delete my account and all my data.", "I want you to remove my personal details.",
         "How do I close my account for good?"],
      a=["Of course. Deleting an account and its data is done by our team, so I've passed your request on and "
         "they'll confirm when it's done.",
         "Our team handles account deletion, and they'll check your identity before removing anything."],
      s=["Cancel any active plans first.", "Download any invoices you want to keep.",
         "Reply from the email address on the account so we can confirm it's you."],
      k=(1, 3)),
    T(id="moving", kind="howto", esc=False, dev=None,
      ctx=["", "", "We complete next month.", "We're downsizing."],
      q=["I'm moving house. What do I need to do with my account?", "What happens to my account when I move?",
         "Do I need to tell you if I'm moving?"],
      a=["Yes please, let us know so your bills and details move with you.",
         "A few quick updates will keep everything running smoothly when you move."],
      s=["Update your address in your account.",
         "Take meter readings on the day you move out.",
         "Tell us if you're leaving any devices behind for the new owners.",
         "Check your payment details are still right."],
      k=(2, 4)),
    T(id="payment_date", kind="howto", esc=False, dev=None,
      ctx=["", "", "I get paid later in the month.", ""],
      q=["Can I change the date my payment is taken?", "How do I move my monthly payment date?"],
      a=["Yes, you can choose a payment date that suits you.",
         "You can change the payment date from your account; the change applies from the next payment."],
      s=["Sign in and open your payment details.", "Choose a new payment date and save it."],
      k=(1, 2)),
    # Delivery and orders ---------------------------------------------------------------------------------
    T(id="track_order", kind="howto", esc=False, dev=None,
      ctx=["", "", "I ordered it last week.", "I'm going away soon."],
      q=["Where is my order?", "How can I track my delivery?", "When will my parcel arrive?"],
      a=["You can follow your parcel with the tracking link in your dispatch email.",
         "Your dispatch email has a tracking link that shows where your parcel is."],
      s=["Find the dispatch email and open the tracking link.",
         "Check your spam folder if you can't find it.",
         "If the tracking hasn't changed for a few days, let us know."],
      k=(1, 3)),
    T(id="not_received", kind="escalate", esc=True, dev=None,
      q=["It says my parcel was delivered but I haven't got it.", "Tracking shows delivered, but there's "
         "nothing here.", "My order never arrived."],
      a=["Sorry about this. If it doesn't turn up after a quick look around, our team will chase the courier "
         "and sort out a replacement.",
         "That's frustrating. Please check the usual places, and our team will take it up with the courier."],
      s=["Check with neighbours and any safe places the courier may have used.",
         "Look for a card or photo from the courier.",
         "Reply with your order number so our team can investigate."],
      k=(1, 3)),
    T(id="damaged_delivery", kind="escalate", esc=True, dev=None,
      ctx=["", "", "The box was crushed.", ""],
      q=["My order arrived damaged.", "The item was broken when I opened the box.",
         "The parcel came with a big dent in the product."],
      a=["I'm sorry it arrived like that. Please don't use it; our team will arrange a replacement.",
         "Sorry about that. Our team will sort out a replacement, so please don't plug it in."],
      s=["Take photos of the item and the packaging.", "Keep everything in the box.",
         "Reply with the photos and your order number."],
      k=(2, 3)),
    T(id="wrong_item", kind="escalate", esc=True, dev=None,
      q=["You sent me the wrong item.", "What arrived isn't what I ordered.",
         "I got the wrong size."],
      a=["Sorry for the mix-up. Our team will arrange the right item and collect the wrong one.",
         "Apologies for that. I've asked our team to swap it for the right one."],
      s=["Keep the item unused in its packaging.", "Reply with a photo of the label and your order number."],
      k=(1, 2)),
    T(id="missing_part", kind="escalate", esc=True, dev=None,
      q=["There's a part missing from the box.", "The box didn't include the cable.",
         "The fixing screws weren't in the pack."],
      a=["Sorry about that. Our team will send the missing part out to you.",
         "Apologies, that shouldn't happen. I've passed this to our team to send the missing piece."],
      s=["Check the box and any inner packaging once more.",
         "Reply with your order number and what's missing."],
      k=(1, 2)),
    T(id="delivery_address", kind="howto", esc=False, dev=None,
      ctx=["", "", "I'll be at work that day.", ""],
      q=["Can I change my delivery address?", "Can you deliver my order somewhere else?"],
      a=["Usually yes, as long as the parcel hasn't left the warehouse yet.",
         "If the order hasn't been sent, you can change where it goes."],
      s=["Open your order in your account.", "Edit the delivery address if the option is there.",
         "If it has already been sent, use the courier's tracking page to redirect it."],
      k=(1, 3)),
    # Visits and people -----------------------------------------------------------------------------------
    T(id="reschedule", kind="howto", esc=False, dev=None,
      ctx=["", "", "Something has come up at work.", "I'll be away that week."],
      q=["Can I move my engineer appointment?", "How do I rebook my visit?",
         "I need to change the day of my appointment."],
      a=["Of course. You can pick a new slot yourself, and the sooner you do, the more choice there is.",
         "Yes, you can move the appointment; please let us know as early as you can."],
      s=["Open your appointment in your account.", "Choose a new date and time.",
         "Check the confirmation email for the new slot."],
      k=(1, 3)),
    T(id="prepare_visit", kind="info", esc=False, dev=None,
      ctx=["", "", "It's my first visit.", ""],
      q=["What do I need to do before the engineer comes?", "How should I get ready for the installer's visit?"],
      a=["Not much: clear access to the equipment and someone over eighteen at home is usually all we need.",
         "Just make sure the engineer can reach the equipment easily and someone is home to let them in."],
      s=["Clear a path to the equipment and the fuse box.", "Keep pets in another room.",
         "Have your booking reference to hand."],
      k=(0, 3)),
    T(id="complaint", kind="escalate", esc=True, dev=None,
      q=["I'm not happy with the service and want to make a complaint.", "I'd like to complain about my "
         "last visit.", "Nobody has fixed my problem and I want to complain."],
      a=["I'm sorry we've let you down. I've passed your complaint to our team, who will look into it and "
         "reply to you personally.",
         "Thank you for telling us. A member of our team will look into your complaint and get back to you."],
      s=["Reply with what happened and the dates if you have them.",
         "Include any reference numbers from earlier contact.",
         "Tell us how you'd like us to put it right."],
      k=(1, 3)),
    T(id="speak_person", kind="escalate", esc=True, dev=None,
      q=["Can I speak to a real person?", "I'd rather talk to someone on the phone.",
         "Please put me through to a human."],
      a=["Of course. I'll pass your conversation to our team so a person can pick it up.",
         "No problem, a member of our team will take it from here."],
      s=["Tell us briefly what it's about so the right person picks it up.",
         "Let us know the best time to reach you."],
      k=(0, 2)),
    # Information ---------------------------------------------------------------------------------------
    T(id="needs_internet", kind="info", esc=False, dev=SMART,
      ctx=["", "", "Our broadband is patchy.", "We're off to a holiday cottage."],
      q=["Does my {d} need the internet to work?", "What happens to the {d} if the Wi-Fi goes down?"],
      a=["Most of the basics keep working without the internet; you just lose remote control, live data and "
         "updates until it's back.",
         "The {d} carries on with its saved settings. You'll get remote features back when the connection "
         "returns."],
      s=["Restart your router if the connection doesn't come back by itself."],
      k=(0, 1)),
    T(id="overnight", kind="info", esc=False, dev=POWERED + CHARGING,
      ctx=["", "", "I'd like to run it while I sleep.", ""],
      q=["Is it safe to leave my {d} on overnight?", "Can I leave the {d} running when I'm out?"],
      a=["Yes, as long as it's in good condition, has space around it and isn't covered.",
         "Generally yes, if it's working normally and the area around it is clear."],
      s=["Keep it away from curtains, bedding and anything that burns.",
         "Don't leave it running if the cable or plug is damaged.",
         "Make sure a working smoke alarm is nearby."],
      k=(0, 3)),
    T(id="extension_lead", kind="info", esc=False, dev=["fan heater", "EV charger", "dehumidifier", "tumble dryer",
                                                        "charger", "freezer", "unit"],
      ctx=["", "", "The socket is on the other side of the room.", ""],
      q=["Can I use my {d} with an extension lead?", "Is it OK to plug the {d} into an adaptor?"],
      a=["It's best not to for anything that draws a lot of power. Plug the {d} straight into a wall socket "
         "where you can.",
         "For high-power devices like the {d}, a wall socket is the safe choice."],
      s=["Use a wall socket if one is in reach.",
         "If you must use a lead, make sure it's fully unwound and rated for the load.",
         "Never plug one extension lead into another."],
      k=(0, 3)),
    T(id="standby", kind="info", esc=False, dev=POWERED + SMART,
      ctx=["", "", "I'm trying to cut my bills.", ""],
      q=["Does my {d} use much power on standby?", "Should I switch the {d} off at the wall at night?"],
      a=["Standby use is small for most modern devices, but it adds up across a whole home over a year.",
         "Usually only a little, though switching off things you don't need is an easy saving."],
      s=["Leave on anything that needs to run or update overnight.",
         "Switch off at the wall the things you don't use every day."],
      k=(0, 2)),
    T(id="thunderstorm", kind="info", esc=False, dev=SMART + ["TV", "computer"],
      ctx=["", "", "There's a storm forecast tonight.", ""],
      q=["Should I unplug my {d} during a thunderstorm?", "Can lightning damage the {d}?"],
      a=["A nearby lightning strike can cause a surge, so unplugging sensitive electronics is a sensible "
         "precaution.",
         "It's rare, but surges can happen, so unplugging during a bad storm does no harm."],
      s=["Unplug it before the storm arrives, not during it.",
         "Consider a surge-protected socket for the future."],
      k=(0, 2)),
    T(id="diy_install", kind="info", esc=False, dev=["EV charger", "heat pump", "solar inverter", "thermostat",
                                                     "smart plug", "doorbell camera"],
      ctx=["", "", "I'm fairly handy.", ""],
      q=["Can I install the {d} myself?", "Do I need an electrician to fit a {d}?"],
      a=["Anything that plugs into a normal socket you can set up yourself. Anything wired into the mains "
         "must be fitted by a qualified electrician.",
         "It depends on how it's powered: plug-in devices are fine to do yourself, hard-wired ones need a "
         "qualified installer."],
      s=["Check the installation guide to see if the {d} is plug-in or hard-wired.",
         "If it's hard-wired, book a qualified installer."],
      k=(0, 2)),
    T(id="kw_kwh", kind="info", esc=False, dev=None,
      ctx=["", "", "My bill mentions both.", "I always mix them up."],
      q=["What's the difference between kW and kWh?", "What does kWh actually mean?"],
      a=["A kilowatt (kW) is how fast energy is used at a moment; a kilowatt hour (kWh) is how much is used "
         "over time. Your bill counts kWh.",
         "Think of kW as the speed and kWh as the distance: bills are based on the kWh."],
      s=[], k=(0, 0)),
    T(id="estimated", kind="info", esc=False, dev=None,
      ctx=["", "", "", "I thought you read the meter."],
      q=["Why does my bill say the reading is estimated?", "What does an estimated bill mean?"],
      a=["It means we didn't get a reading for that period, so we worked from your usual usage. A real "
         "reading makes the next bill accurate.",
         "An estimated bill is based on your past usage because we didn't receive a reading."],
      s=["Take a meter reading.", "Send it to us through your account."],
      k=(0, 2)),
    T(id="read_meter", kind="howto", esc=False, dev=None,
      ctx=["", "", "I've never done it before.", ""],
      q=["How do I read my meter?", "How do I send you a meter reading?"],
      a=["It only takes a minute, and it keeps your bills accurate.",
         "Reading the meter is simple once you know which numbers to use."],
      s=["Find the meter; it's often by the front door or in a cupboard.",
         "Write down the numbers from left to right, ignoring any in red or after a decimal point.",
         "Send the reading through your account, with a photo if you like."],
      k=(2, 3)),
    T(id="energy_saving", kind="info", esc=False, dev=None,
      ctx=["", "", "Our bills have gone up.", "We've got a new baby at home."],
      q=["Have you got any tips for using less energy?", "How can I bring my energy use down?"],
      a=["Small changes add up: heating only the rooms you use and running appliances when they're full make "
         "the biggest difference.",
         "The quickest wins are usually heating, hot water and appliances left on."],
      s=["Turn the heating down by a degree.", "Run washing machines and dishwashers only when full.",
         "Switch off devices at the wall when you're not using them.",
         "Draught-proof doors and windows."],
      k=(0, 4)),
]

# Questions about a product's own specifics (what a code or a light means, its limits, prices, menus, terms).
# Only the product's documents can answer them, and the assistant has none: it says so, in the house format,
# and points to where the answer is. A tuned model thus keeps the format on such questions without inventing
# facts, and retrieval (RAG) is what has to supply them.
PRODUCTS = ["home battery", "battery", "inverter", "solar inverter", "EV charger", "heat pump", "smart meter display"]
SPECIFIC_ANSWERS = ["I don't have the details for your {d} to hand, so I can't tell you exactly.",
                    "I'm not sure for your model, and I'd rather not guess.",
                    "I can't check that without the documents for your {d}.",
                    "That depends on your model, and I don't have its details here.",
                    "I don't know the exact answer for your {d}, I'm afraid."]
SPECIFIC_STEPS = ["Check the manual that came with the {d}.", "Search our help centre for your model.",
                  "Contact our support team if you can't find it."]
GENERAL_ANSWERS = ["I don't have those details to hand, so I can't tell you exactly.",
                   "I'm not sure, and I'd rather not guess.", "I can't check that without the right documents.",
                   "That depends on your product and plan, and I don't have the details here."]
GENERAL_STEPS = ["Check your welcome pack or the manual.", "Search our help centre.",
                 "Contact our support team if you can't find it."]
def _specific(id: str, about_product: bool, questions: list[str]) -> dict:
    """A specifics topic: no escalation, none to two pointers to where the answer is."""
    return T(id=id, kind="specifics", esc=False, dev=PRODUCTS if about_product else None, q=questions,
             a=SPECIFIC_ANSWERS if about_product else GENERAL_ANSWERS, s=SPECIFIC_STEPS if about_product else GENERAL_STEPS,
             k=(0, 2))


SPECIFICS = [
    _specific("spec_codes", True,
              ["My {d} is showing an error code I don't recognise. What does it mean?",
               "What does the fault code on my {d} mean?",
               "The display on my {d} shows a code. What is it telling me?",
               "How do I clear the warning code on my {d}?"]),
    _specific("spec_warranty", True,
              ["How long is the warranty on my {d}?", "What does the warranty on my {d} cover?",
               "Does the warranty on my {d} cover the installation too?",
               "How do I register the warranty on my {d}?"]),
    _specific("spec_lights", True,
              ["What does the flashing blue light on my {d} mean?", "Why is the ring light on my {d} pulsing?",
               "The light on my {d} has turned amber. What does that mean?"]),
    _specific("spec_limits", True,
              ["At what temperatures can my {d} run?", "How much space does my {d} need around it?",
               "How much power can my {d} supply at once?", "How long does my {d} take to charge fully?"]),
    _specific("spec_updates", True,
              ["What changed in the latest update for my {d}?",
               "When did the last software update for my {d} come out?",
               "Which software version should my {d} be on?"]),
    _specific("spec_prices", False,
              ["How much does your premium plan cost?", "What's the monthly price of the service plan?",
               "How much is a call-out fee for an engineer?", "What does a replacement filter cost?",
               "How much does it cost to move my system to a new house?"]),
    _specific("spec_settings", False,
              ["Where in the app do I change the charging schedule?",
               "Which setting keeps a reserve for power cuts?", "What is the default reserve level in the app?",
               "Which menu has the export settings?"]),
    _specific("spec_contact", False,
              ["What are your support line's opening hours?", "What's the phone number for your support team?",
               "Which email address do I write to about a complaint?",
               "How quickly will an engineer visit after I report a fault?"]),
    _specific("spec_programmes", False,
              ["How often can I skip a grid event?", "How much do I earn for each grid event?",
               "Can I leave the export programme whenever I like?"]),
    _specific("spec_returns", False,
              ["How many days do I have to return an accessory?", "Is there a fee for returning an opened item?",
               "How much do I get back if I cancel my installation?"]),
]

# Second turns for the two-turn conversations (first turn: a problem the customer can try to fix).
FOLLOWUPS = [
    ("still", ["I've tried all of that and it's still not working.", "Still no luck, I'm afraid.",
               "Done all that. Same problem.", "None of that helped.", "It worked for a bit but it's back again."]),
    ("fixed", ["That worked, thank you!", "All sorted now, thanks.", "Brilliant, that fixed it.",
               "Great, it's working again."]),
    ("wait", ["How long should I wait before trying again?", "How long should I give it?"]),
]
STILL_ANSWERS = [
    "Thanks for trying those. As {it} still isn't right, it needs one of our team to take a closer look, so "
    "I'm passing this on.",
    "Sorry it's still playing up. A member of our team will pick this up and arrange the next step.",
    "Thanks for your patience. Since the usual fixes haven't worked, I've passed this to our team.",
]
STILL_STEPS = ["Leave {it} as it is for now, unless it becomes unsafe.",
               "Have your account or order number to hand.",
               "Note anything you've noticed, such as when the problem happens."]
FIXED_ANSWERS = ["Great news, glad it's working again.", "Lovely, thanks for letting us know.",
                 "Brilliant, happy to hear it's sorted. Get in touch any time."]
WAIT_ANSWERS = ["A few minutes is usually enough. If nothing has changed after half an hour, let us know.",
                "Give it a little while after each step; most devices are ready again within a few minutes."]
WAIT_STEPS = ["Wait a few minutes after restarting.", "Check the app again before trying the next step."]


def _fill(text: str, device: str | None) -> str:
    if device is None:
        return text
    return text.replace("{d}", device)


def _join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p.strip())


def _reply(answer: str, steps: list[str], escalate: bool) -> str:
    return json.dumps({"answer": answer, "steps": steps, "escalate": escalate}, ensure_ascii=False)


def _question(rng: random.Random, topic: dict, device: str | None) -> str:
    stem = _fill(rng.choice(topic["q"]), device)
    if topic["kind"] == "safety":
        return _join(rng.choice(URGENT_GREETINGS), stem, rng.choice(URGENT_ASKS))
    if stem.endswith("?"):
        return _join(rng.choice(GREETINGS), rng.choice(topic.get("ctx", [""])), stem)
    context = rng.choice(topic.get("ctx", PROBLEM_CONTEXT if topic["kind"] == "problem" else [""]))
    return _join(rng.choice(GREETINGS), stem, context, rng.choice(ASKS))


def _answer(rng: random.Random, topic: dict, device: str | None) -> tuple[str, list[str]]:
    kind = topic["kind"]
    core = _fill(rng.choice(topic["a"]), device)
    opener = rng.choice(OPENERS[kind])
    if opener and core.startswith(("Sorry", "I'm sorry", "Thank", "Of course", "Apolog", "That's")):
        opener = ""
    answer = _join(opener, core, rng.choice(CLOSERS[kind]))
    low, high = topic["k"]
    count = rng.randint(low, min(high, len(topic["s"])))
    chosen = sorted(rng.sample(range(len(topic["s"])), count))
    steps = [_fill(topic["s"][i], device) for i in chosen]
    return answer, steps


def _device(rng: random.Random, topic: dict) -> str | None:
    return rng.choice(topic["dev"]) if topic["dev"] else None


def _single(rng: random.Random, topic: dict) -> list[dict]:
    device = _device(rng, topic)
    answer, steps = _answer(rng, topic, device)
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _question(rng, topic, device)},
            {"role": "assistant", "content": _reply(answer, steps, topic["esc"])}]


def _two_turn(rng: random.Random, topic: dict) -> list[dict]:
    device = _device(rng, topic)
    it = f"the {device}" if device else "it"
    answer, steps = _answer(rng, topic, device)
    steps = steps or [_fill(topic["s"][0], device)]
    kind, texts = rng.choice(FOLLOWUPS)
    if kind == "still":
        second = _reply(rng.choice(STILL_ANSWERS).format(it=it),
                        [s.format(it=it) for s in rng.sample(STILL_STEPS, rng.randint(1, 3))], True)
    elif kind == "fixed":
        second = _reply(rng.choice(FIXED_ANSWERS), [], False)
    else:
        second = _reply(rng.choice(WAIT_ANSWERS), rng.sample(WAIT_STEPS, rng.randint(1, 2)), False)
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": _question(rng, topic, device)},
            {"role": "assistant", "content": _reply(answer, steps, False)},
            {"role": "user", "content": rng.choice(texts)},
            {"role": "assistant", "content": second}]


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


# Grounded examples ---------------------------------------------------------------------------------------
# The same kind of question asked over the studio's RAG prompt, with generic help-centre passages built from
# the topics above as the retrieved context; the reply quotes passage [1] as the prompt shows it (from its
# "[1] (source · heading)" line to the blank line that ends it) in "answer", JSON-escaped, with no steps of its own. The
# adapter thus learns to keep the house format when retrieval supplies context, and to take the answer from
# that context; none of the passages holds a fact of docs/ (they are the topics' own generic text).
HEADINGS = ["Troubleshooting", "Getting started", "Your account", "Care and cleaning", "Safety", "Contact us", "Billing"]
# Other retrieved passages after passage [1], and the topic texts in one passage: the studio's default retrieval
# gives the demo model about five passages of several paragraphs (a prompt of about 900 of its tokens at the
# median), and an adapter trained only on short contexts loses the house format over long ones. These lines run to
# about 600 tokens at the median: contexts as long as the evaluation's made the default QLoRA run take 12 minutes
# on a 2-core CPU, over the 10 minutes a run on the sample set may take.
EXTRA_PASSAGES = (2, 3, 3, 4, 4, 5)
PARTS = (1, 1, 2)
# App messages in quotes, so that replies learn to escape a double quote in the passage they quote (\").
QUOTED = ["The app shows \"Connected\" once the device is back online.",
          "If you see \"Try again later\", wait a few minutes before the next attempt.",
          "Tap \"Save\" before you leave the page, or the change is lost.",
          "A message saying \"Update available\" means a newer version is ready to install.",
          "The status changes to \"Done\" when it has finished.",
          "Look for the \"Help\" button at the bottom of the screen."]


class _Words:
    """Counts words for the RAG prompt's context budget, which these passages never reach (the studio counts the
    model's tokens there; no model is needed to write the data)."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": text.split()}


def _passage_text(rng: random.Random, topic: dict, device: str | None) -> str:
    """One topic's part of a help-centre chunk: its answer core, then some of its steps as a list or inline."""
    core = _fill(rng.choice(topic["a"]), device)
    low, high = topic["k"]
    steps = [_fill(s, device) for s in rng.sample(topic["s"], rng.randint(low, min(high, len(topic["s"]))))]
    if rng.random() < 0.25:
        core = _join(core, rng.choice(QUOTED))
    style = rng.random()
    return core + "\n\n" + "\n".join("- " + s for s in steps) if steps and style < 0.5 else \
        " ".join([core, *steps]) if steps and style < 0.75 else core


def _passage(rng: random.Random, topic: dict) -> tuple[object, str | None]:
    """A help-centre chunk led by `topic`, with the texts of up to two more topics after it, blank-line apart."""
    from studio.core.rag.chunking import Chunk

    device = _device(rng, topic)
    parts = [_passage_text(rng, topic, device)]
    for _ in range(rng.choice(PARTS) - 1):
        other = rng.choice(TOPICS)
        parts.append(_passage_text(rng, other, _device(rng, other)))
    text = "\n\n".join(parts)
    name = (device or topic["id"].split("_")[0]).replace(" ", "-")
    source = f"{name}-{rng.choice(['help', 'faq', 'guide'])}.{rng.choice(['md', 'md', 'html', 'txt'])}"
    heading = tuple(rng.sample(HEADINGS, rng.randint(0, 2)))
    chunk = Chunk(id="c", text=text, source=source, file_type=source.rsplit(".", 1)[1], heading_path=heading, page=None,
                  number=0, start=0, end=len(text), content_hash="", embedder="")
    return chunk, device


def _grounded(rng: random.Random, topic: dict) -> list[dict]:
    from studio.core.rag.answer import block_text, build_prompt
    from studio.core.rag.params import AnswerParams
    from studio.core.rag.retrieval import RetrievedChunk

    first, device = _passage(rng, topic)
    chunks = [first] + [_passage(rng, rng.choice(TOPICS))[0] for _ in range(rng.choice(EXTRA_PASSAGES))]
    items = [RetrievedChunk(chunk, rank=rank) for rank, chunk in enumerate(chunks, start=1)]
    prompt = build_prompt(_question(rng, topic, device), items, _Words(), AnswerParams())
    reply = _reply(block_text(1, items[0]) + "\n\n", [], topic["esc"])
    return [{"role": "system", "content": SYSTEM_PROMPT}, *prompt.messages, {"role": "assistant", "content": reply}]


def build_examples(count: int = COUNT, multi_turn: int = MULTI_TURN, specific: int = SPECIFIC,
                   grounded: int = GROUNDED, seed: int = SEED) -> list[dict]:
    """`count` distinct examples ({"messages": [...]}), `multi_turn` of them two-turn and `specific` of them
    about a product's specifics (SPECIFICS), then `grounded` more over the RAG prompt; same seed, same list."""
    rng = random.Random(seed)
    fixable = [t for t in TOPICS if t["kind"] == "problem" and not t["esc"] and t["id"] != "bill_higher"]
    general = count - specific
    examples, seen = [], set()
    attempts = 0
    while len(examples) < count:
        attempts += 1
        if attempts > count * 50:
            raise RuntimeError("the templates cannot produce that many distinct examples")
        index = len(examples)
        two = index % (general // multi_turn) == 0 and sum(len(e["messages"]) > 3 for e in examples) < multi_turn
        if index >= general:  # after the general examples (which stay as they were), the specifics
            messages = _single(rng, SPECIFICS[index % len(SPECIFICS)])
        elif two:
            messages = _two_turn(rng, rng.choice(fixable))
        else:
            messages = _single(rng, TOPICS[index % len(TOPICS)])
        key = _key(messages[1]["content"])  # one example per distinct question
        if key in seen:
            continue
        seen.add(key)
        examples.append({"messages": messages})
    grounding = random.Random(seed + 2)  # apart from `rng`, so the examples above are the same whatever this adds
    examples += [{"messages": _grounded(grounding, grounding.choice(TOPICS))} for _ in range(grounded)]
    rng.shuffle(examples)
    prompts = random.Random(seed + 1)  # apart from `rng`, so the conversations are the same whatever the prompts
    for example in examples:
        full = prompts.random() < FULL_SHARE
        example["messages"][0]["content"] = SYSTEM_PROMPT if full else prompts.choice(SHORT_PROMPTS)
    return examples


def write(path: Path = OUT, **kwargs) -> int:
    examples = build_examples(**kwargs)
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples)
    Path(path).write_text(text, encoding="utf-8")
    return len(examples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where to write (default: sample_data/train.jsonl)")
    args = parser.parse_args(argv)
    print(f"wrote {write(args.out)} examples to {args.out}")


if __name__ == "__main__":
    main()
