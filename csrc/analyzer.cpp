#include "analyzer.hpp"
