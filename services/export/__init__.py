"""From a verified lock to a submission package: SDTM and ADaM (``sdtm.py``, ``findings.py``,
``response.py``, ``design.py``, ``adam.py``), the conformance suite (``conformance.py``),
XPT v5 and Dataset-JSON files (``xpt.py``, ``datasetjson.py``), define.xml (``define.py``),
and the package and its manifest (``package.py``); ``tract export`` is services/cli/export.py.
The CDISC metadata is data in ``schemas/cdisc/``."""
