// "Data sharing between process: dict or list", from the course notes (001):
//
//   # Dict/list Example
//   from multiprocessing import Process, current_process
//   from multiprocessing import Manager
//   from time import sleep
//
//   def foo(d):
//       t = current_process()
//       print(f"In foo[{t.name}]: d contains {dict(d)}")
//       sleep(2)
//       d["name"] = "Smith"
//       d["country"] = "India"
//
//   def bar(arr):
//       t = current_process()
//       sleep(3)
//       print(f"In bar[{t.name}]: d  contains {dict(d)}")
//       del d["role"]
//
//   if __name__ == '__main__':
//       manager = Manager()
//       d = manager.dict()
//
//       d["name"] = "Jones"
//       d["role"] = "Developer"
//       d["place"] = "Hyderabad"
//
//       t1 = Process(target=foo, args=(d,))
//       t2 = Process(target=bar, args=(d,))
//       t1.start()
//       t2.start()
//       t1.join()
//       t2.join()
//       print("In main: contents of d =", dict(d))
//       print("In main: d =", d)
//
// prints (each line one line, cut here)
//   In foo[Process-1]: d contains {'name': 'Jones', 'role': 'Developer', 'place':
//   'Hyderabad'}
//   In bar[Process-2]: d  contains {'name': 'Smith', 'role': 'Developer', 'place':
//   'Hyderabad', 'country': 'India'}
//   In main: contents of d = {'name': 'Smith', 'place': 'Hyderabad', 'country': 'India'}
//   In main: d = <DictProxy object, typeid 'dict' at 0x7f...>
//
// The dict lives in shared memory (no manager server process): every operation is a
// memory operation, not a socket round trip. The seed's bar reads the global `d` (which
// works only with fork); here it gets d as its argument, like foo. Both children wait at
// a Barrier after foo's first line, so bar reads after foo's writes however slowly either
// starts. The dict prints in insertion order, as Python's does; the last line prints
// the proxy's repr without the address, which changes from run to run.
#include <string>
#include <utility>
#include <vector>

#include <mp/mp.hpp>

#include "common.hpp"

namespace course {
namespace {

using detail::say;
using Dict = mp::SharedDict<std::string, std::string>;

// Python's repr() of a str (enough for the program's words).
std::string repr(const std::string& text) {
  const char quote =
      text.find('\'') != std::string::npos && text.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, quote);
  for (char c : text) {
    if (c == quote || c == '\\') out += '\\';
    out += c;
  }
  return out + quote;
}

// Python's repr() of dict(d): {'name': 'Jones', ...}, in insertion order.
std::string repr(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string out = "{";
  for (const auto& [key, value] : items) {
    if (out.size() > 1) out += ", ";
    out += repr(key) + ": " + repr(value);
  }
  return out + "}";
}

void foo(Dict d, mp::Barrier started, Settings settings) {
  const std::string& t = mp::current_process().name();
  say("In foo[%s]: d contains %s\n", t.c_str(), repr(d.items()).c_str());
  started.wait();
  detail::sleep(settings, 2);
  d["name"] = "Smith";
  d["country"] = "India";
}

void bar(Dict d, mp::Barrier started, Settings settings) {
  const std::string& t = mp::current_process().name();
  started.wait();
  detail::sleep(settings, 3);
  say("In bar[%s]: d  contains %s\n", t.c_str(), repr(d.items()).c_str());
  d.erase("role");
}

}  // namespace

int manager_dict(const Settings& settings) {
  mp::Manager manager;
  Dict d = manager.dict<std::string, std::string>();
  d["name"] = "Jones";
  d["role"] = "Developer";
  d["place"] = "Hyderabad";

  mp::Barrier started(2);
  mp::Process t1({.start_method = settings.start_method}, &foo, d, started, settings);
  mp::Process t2({.start_method = settings.start_method}, &bar, d, started, settings);
  t1.start();
  t2.start();
  t1.join();
  t2.join();
  say("In main: contents of d = %s\n", repr(d.items()).c_str());
  say("In main: d = <mp::SharedDict object, typeid 'dict', %zu items>\n", d.size());
  return t1.exitcode() == 0 && t2.exitcode() == 0 ? 0 : 1;
}

}  // namespace course
