// Precompiled header: the heavy, stable includes shared by every translation unit.
#pragma once
#include <napi.h>
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/version.h>
#include <functional>
#include <c10/util/Optional.h>
#include <string>
#include <vector>
