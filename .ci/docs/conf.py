# Sphinx configuration of the sr3lit docs site: the parts of Jupyter Book 1 (myst-nb, sphinx-book-theme and
# sphinx-external-toc), called directly so that nothing loads from a CDN. `make docs` runs .ci/docs.py, which stages
# the notebooks next to this file and builds them into _docs/.
project = 'sr3lit'
author = 'The sr3lit developers'
copyright = '2026 onwards, The sr3lit developers'

extensions = ['myst_nb', 'sphinx_external_toc', 'sphinx_book_theme', 'sphinx_copybutton', 'sphinx_togglebutton',
              'sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'sphinx.ext.viewcode', 'nbdev_docstrings']
external_toc_path = '_toc.yml'          # every chapter, in reading order (tests/test_docs.py checks it)
exclude_patterns = ['_build', '**.ipynb_checkpoints']

# The committed outputs are shown as they are: nothing is executed (`make outputs` refreshes them).
nb_execution_mode = 'off'
nb_merge_streams = True
nb_ipywidgets_js = {}                   # widget views fall back to their text; no require.js from a CDN
myst_enable_extensions = ['amsmath', 'dollarmath', 'colon_fence', 'deflist', 'html_image']
myst_heading_anchors = 3

# MathJax 3 is served by the site itself (.ci/docs.py copies it from npm's mathjax package into _site_static/).
html_static_path = ['_site_static']      # copied to _static/: MathJax is _static/mathjax/
mathjax_path = 'mathjax/tex-chtml.js'

html_theme = 'sphinx_book_theme'
html_title = 'sr3lit'
html_sourcelink_suffix = ''
html_context = {'default_mode': 'light'}
html_theme_options = {
    'home_page_in_toc': True,
    'search_bar_text': 'Search the course...',
    'show_toc_level': 2,
    'use_download_button': False,
    'use_fullscreen_button': False,
    'use_repository_button': False,
}

autodoc_default_options = {'members': True, 'undoc-members': True}
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
suppress_warnings = ['myst.header', 'myst.xref_missing', 'mystnb.unknown_mime_type', 'misc.highlighting_failure']
