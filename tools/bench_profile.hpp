// The value `tempest bench --mode cached` caches, and bench/micro_bench.cpp encodes and decodes:
// a 5-field described struct, so both measure the same thing.
#pragma once

#include <boost/describe/class.hpp>
#include <string>

namespace tempest::bench {

struct Profile {
  std::string id;
  std::string name;
  std::string email;
  long long age;
  double score;
};
BOOST_DESCRIBE_STRUCT(Profile, (), (id, name, email, age, score))

}  // namespace tempest::bench
