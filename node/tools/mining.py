"""Constants the network miner and its command line share. It imports nothing, so ``popchain``'s argument
parser (built for every command) does not pay for numpy or scikit-learn."""

FAMILY_CHOICES = ("auto", "gbdt", "forest", "extra", "linear", "mlp")   # --model
AUTO_FAMILIES = ("gbdt", "forest", "extra", "linear", "mlp")            # the auto tournament, in this order
DEFAULT_MAX_ROWS = 200_000   # stationary tasks: rows a miner keeps for training (--max-rows)
WINDOW_ROWS = 8_000          # drifting tasks: the newest rows a candidate fits on
