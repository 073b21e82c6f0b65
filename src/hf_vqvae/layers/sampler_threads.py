"""How many threads the cached samplers (`gated_pixelcnn_sampler`, `wavenet`) run a unit of their work on: the
sizes below which a step stays on one thread, and the trial that picks the count for the rest (`ThreadPolicy`)."""


# A per-position step below this many multiply-adds runs on one thread: splitting it costs more in synchronisation
# than it saves, and on a machine shared with other work a second thread that is not scheduled stalls every step.
# The eager step splits each product between torch's threads; the compiled one splits the batch between threads
# kept waiting between steps (`fused_steps.cpp`'s WorkerPool), which pays off from smaller steps on.
SINGLE_THREAD_STEP_MACS = 4_000_000
SINGLE_THREAD_FUSED_STEP_MACS = 1_000_000


class ThreadPolicy:
    """How many threads a sampler's units of identical work run on (a PixelCNN row, a WaveNet sample; one layer's
    vertical stack at one row in the eager PixelCNN sampler). Threads that wait for a core on a busy machine stall each
    other at every synchronisation (measured here: one layer's product of a row three to ten times slower at two
    threads than at one), so the count is chosen by trial. With more than one thread allowed, units 0 to 2 run on one
    thread and units 3 to 5 on all of them; the first of each three is a warm-up (the first call on several threads
    starts them, which can take milliseconds), and the faster of the two counts, by the quicker of its two timed units,
    runs the rest. Three units in a row on several threads that each take over 1.5 times the one-thread time (the
    machine got busier; one slow unit is a hiccup) move the rest to one thread."""

    TRIAL = 3  # units per thread count: a warm-up, then two timed
    SLOW_UNITS = 3

    def __init__(self, threads: int):
        self.threads = threads
        self.timed = {}  # thread count -> seconds of its quicker timed unit
        self.chosen = 1 if threads > 1 else threads
        self.slow_units = 0

    def threads_for(self, unit: int) -> int:
        if self.threads == 1 or unit < self.TRIAL:
            return 1
        return self.threads if unit < 2 * self.TRIAL else self.chosen

    def record(self, unit: int, threads: int, seconds: float) -> None:
        if self.threads == 1 or (unit % self.TRIAL == 0 and unit < 2 * self.TRIAL):
            return
        if unit < 2 * self.TRIAL:
            self.timed[threads] = min(seconds, self.timed.get(threads, seconds))
            if unit == 2 * self.TRIAL - 1:
                self.chosen = min(self.timed, key=self.timed.get)
        elif threads > 1:
            self.slow_units = self.slow_units + 1 if seconds > 1.5 * self.timed[1] else 0
            if self.slow_units == self.SLOW_UNITS:
                self.chosen = 1
