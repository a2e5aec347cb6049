// Must compile: a user type made encodable through the customization point.
#include "tempest/cache/key.hpp"

struct Money {
  long long cents;
  std::string currency;
};

template <>
struct tempest::cache::KeyEncoder<Money> {
  static void encode(KeyWriter& w, const Money& m) {
    w.begin_array();
    w.integer(m.cents);
    w.string(m.currency);
    w.end_array();
  }
};

int main() {
  return tempest::cache::encode_args(Money{150, "EUR"}) == "[[150,\"EUR\"]]" ? 0 : 1;
}
