"""The machinery behind the course stages: what a first reading can skip.

The numbered scripts at the root are the lesson; the modules here hold what they need but do
not teach: downloading and reading archives, managing a training run (resuming, staged
overwrites, Ctrl-C, time budgets, several processes).
"""
