"""Code loaded *inside* the real OpenStack services of the test stack.

Everything in this package runs in the stack's own venv (keystone, glance, cinder
installed from PyPI), never in volimg's venv: the uWSGI apps import
``realstack.keystone_app`` / ``realstack.glance_app``, the single Cinder process is
``python -m realstack.cinder_all``, and cinder.conf loads
``realstack.file_driver.FileVolumeDriver``. ``stack.py`` puts this folder on the
services' ``PYTHONPATH``.
"""
