// minidl::nn in one include: modules, layers, transformer models, losses, initialisation and
// safetensors I/O.
#pragma once

#include "nn/init.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/module.h"
#include "nn/safetensors.h"
#include "nn/transformer.h"
