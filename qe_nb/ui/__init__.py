"""What a person sees: matplotlib figures, the ipywidgets apps and the Voila triage app.

Thin: every number shown comes from a :mod:`qe_nb.core` or :mod:`qe_nb.pipeline` function.
The only layer that imports matplotlib or ipywidgets.

- figures: :mod:`~qe_nb.ui.figures` (Figure 4, alarm histogram, ``save_figures``),
  :mod:`~qe_nb.ui.sweep_figures` (α sweep, thresholds), :mod:`~qe_nb.ui.overlay` (a case's
  outlines), :mod:`~qe_nb.ui.render` (figure to PNG), :mod:`~qe_nb.ui.style` (colours);
  :mod:`~qe_nb.ui.drift_figures` (alarm rate over time); :mod:`~qe_nb.ui.plots` re-exports them;
- apps: :mod:`~qe_nb.ui.explorer` (with :mod:`~qe_nb.ui.controls` and
  :mod:`~qe_nb.ui.explorer_views`), :mod:`~qe_nb.ui.viewer`, :mod:`~qe_nb.ui.triage_app`
  (with :mod:`~qe_nb.ui.triage_views`, :mod:`~qe_nb.ui.triage_desk` (saving, retrying),
  :mod:`~qe_nb.ui.review_session` (reviewer, presence, refresh), :mod:`~qe_nb.ui.verdicts`,
  :mod:`~qe_nb.ui.serve`, and for the server :mod:`~qe_nb.ui.voila_server` with
  :mod:`~qe_nb.ui.access` (token, Host and Origin checks)),
  sharing :mod:`~qe_nb.ui.common` and :mod:`~qe_nb.ui.app_inputs` (the apps' input checks);
  :mod:`~qe_nb.ui.widgets` re-exports the apps.
"""
