// Must NOT compile: a pointer to a user type has no key encoding, and tempest refuses to build a
// key from an address. ctest checks that the compiler stops with tempest's own message.
#include "tempest/cache/key.hpp"

struct Widget {
  int size;
};

int main() {
  Widget w{3};
  return static_cast<int>(tempest::cache::encode_args(&w).size());
}
