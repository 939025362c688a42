# Scenarios are data: what the simulated wearer's body does. A scenario may
# also come from a JSON file with the same keys (WEARSAFE_SCENARIO=path).
#   hr            heart rate, beats/min        hrv   beat-to-beat variability (fraction)
#   spo2          oxygen saturation, 0..1       perfusion  PPG AC/DC of the IR channel
#   spo2_from_s   seconds from start until spo2 applies (before: 0.98)
#   temp          body temperature, Celsius    noise  PPG noise, counts (1 sigma)
#   cadence       steps/s (0: not walking)     stride_g  vertical acceleration of a step, g
#   hand_moves    small hand movements per minute (at rest)
#   motion        PPG motion artefact, fraction of DC
#   on_wrist      False: the sensor sees ambient light only
#   missing       chips that do not answer on the bus
#   ppg_csv, ppg_csv_rate  replay a recorded PPG column instead of the model
BASE: dict = {
    "hr": 62, "hrv": 0.04, "spo2": 0.98, "spo2_from_s": 0, "perfusion": 0.02, "temp": 36.6,
    "noise": 60,
    "cadence": 0.0, "stride_g": 0.0, "hand_moves": 2, "motion": 0.0, "on_wrist": True,
    "missing": (), "ppg_csv": None, "ppg_csv_rate": 0,
}

SCENARIOS: dict[str, dict] = {
    "rest": {},
    "walk": {"hr": 95, "cadence": 1.8, "stride_g": 0.35, "hand_moves": 0, "motion": 0.002},
    "run": {"hr": 150, "cadence": 2.7, "stride_g": 0.9, "hand_moves": 0, "motion": 0.004,
            "perfusion": 0.03},
    "fever": {"hr": 98, "temp": 38.9},
    "desaturation": {"hr": 80, "spo2": 0.86, "spo2_from_s": 40},
    "off-wrist": {"on_wrist": False},
    "chip-missing": {"missing": ("max30205",)},
}


def load(name_or_path):
    scenario = dict(BASE)
    if name_or_path in SCENARIOS:
        scenario.update(SCENARIOS[name_or_path])
    elif name_or_path.endswith(".json"):
        import json

        with open(name_or_path) as f:
            custom = json.load(f)
        unknown = [k for k in custom if k not in BASE]
        if unknown:
            raise ValueError("scenario %s: unknown keys %s" % (name_or_path, unknown))
        scenario.update(custom)
    else:
        raise ValueError("unknown scenario %r: use one of %s or a .json file"
                         % (name_or_path, ", ".join(sorted(SCENARIOS))))
    return scenario
