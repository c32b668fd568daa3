"""The one model architecture the real-engine tier serves, as an SGLang model package.

SGLang 0.5.23 imports all of its ~270 model modules in every server process at start-up unless
``SGLANG_EXTERNAL_MODEL_PACKAGE`` names a package of models to register instead (its "fast
startup path"; any other architecture still loads SGLang's own registry on demand). The cpu-*
cluster files name this package: about 16 s less per SGLang bring-up on two cores.
"""
