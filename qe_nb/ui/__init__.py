"""What a person sees: matplotlib figures, the ipywidgets apps and the Voila triage app.

Thin: every number shown comes from a :mod:`qe_nb.core` or :mod:`qe_nb.pipeline` function.
The only layer that imports matplotlib or ipywidgets.
"""
