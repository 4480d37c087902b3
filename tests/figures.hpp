// Figures for README's Reliability section: a test that measures something worth
// reporting (inputs tried, processes killed, leaks found) records it here, and
// tests/reliability_report.py (./build.sh reliability) turns the figures of the last
// run into the README block. Nobody types these numbers.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace mp_test {

// Appends {"test": <current test>, "figure": name, "value": value} to the build's
// figures file (MP_TESTS_FIGURES_PATH, emptied by the leak-check fixture at the start
// of each ctest run). One O_APPEND write per line: tests running in parallel
// processes never interleave. Call it from the test process, not from children.
inline void record_figure(const std::string& name, std::int64_t value) {
#ifdef MP_TESTS_FIGURES_PATH
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string test =
      info ? std::string(info->test_suite_name()) + "." + info->name() : std::string("?");
  const std::string line = "{\"source\": \"test\", \"test\": \"" + test + "\", \"figure\": \"" +
                           name + "\", \"value\": " + std::to_string(value) + "}\n";
  const int fd = ::open(MP_TESTS_FIGURES_PATH, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;  // no figures directory: a build without the leak-check fixture
  [[maybe_unused]] ssize_t written = ::write(fd, line.data(), line.size());
  ::close(fd);
#else
  (void)name;
  (void)value;
#endif
}

}  // namespace mp_test
