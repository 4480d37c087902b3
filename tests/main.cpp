#include <gtest/gtest.h>

#include <mp/context.hpp>

int main(int argc, char** argv) {
  // A spawned child re-executes this binary; freeze_support turns it into the child.
  mp::freeze_support(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
