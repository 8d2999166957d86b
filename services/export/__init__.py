"""From a verified lock to a submission package: SDTM and ADaM (``sdtm.py``, ``findings.py``,
``response.py``, ``design.py``, ``adam.py``), the conformance suite (``conformance.py``),
XPT v5 and Dataset-JSON files (``xpt.py``, ``datasetjson.py``), define.xml (``define.py``),
the package and its manifest (``package.py``) and ``tract export`` (``commands.py``). The CDISC
metadata is data in ``schemas/cdisc/``."""
