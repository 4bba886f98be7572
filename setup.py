"""Which packages the distribution installs (everything else is in pyproject.toml).

The code packages are found as before: every package under workbench/, reward_synthesis/ and
policies/. One more package has its files elsewhere: ``workbench.assets`` is the top-level
``assets/`` folder (MJCF models, small data files). setuptools' ``[tool.setuptools.packages.find]``
names a package by its folder and ignores a ``package-dir`` mapping for a package it did not find,
so the list is made here, where the mapped package can be added to what find returns. Its files
are installed by ``[tool.setuptools.package-data]`` in pyproject.toml; code opens them through
``workbench.assets.asset_path``.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["workbench*", "reward_synthesis*", "policies*"]),
              "workbench.assets"],
    package_dir={"workbench.assets": "assets"},
)
