#pragma once
// Faces in gate camera snapshots: find them, and blur them out of any image Courtyard keeps or
// serves (residential gates may not rely on faces alone, and face data stays minimal). OpenCV's
// Haar cascade for frontal faces (Debian's opencv-data) does the finding; OpenCV types stay out of
// this header. A FaceDetector is not thread-safe: one per thread.
#include <cstddef>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace courtyard::processors {

struct VisionConfig {
  // Frontal-face cascade; a stricter min_neighbors trades small faces for fewer false ones.
  std::string face_model = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml";
  double scale_step = 1.1;              // image pyramid step between scales
  int min_neighbors = 10;               // overlapping detections a face needs
  int min_face_px = 24;                 // smallest face side considered, pixels
  std::size_t max_image_bytes = 2 << 20;  // larger snapshots are refused
  int max_side_px = 4096;               // larger images are refused
  int blur_cells = 4;                   // a blurred head keeps this many cells per side, at most
};

struct Box {
  int x = 0, y = 0, width = 0, height = 0;
  bool operator==(const Box&) const = default;
};

struct ImageScan {
  int width = 0, height = 0;
  std::vector<Box> faces;
};

class FaceDetector {
 public:
  // Errors: the model cannot be loaded.
  static std::expected<std::unique_ptr<FaceDetector>, std::string> open(const VisionConfig& config);
  ~FaceDetector();
  // Faces in an encoded image (JPEG, PNG). Errors say why the bytes are not a usable image.
  std::expected<ImageScan, std::string> scan(std::string_view image) const;
  // The image as JPEG with each face (and a margin around it) pixelated beyond recognition.
  std::expected<std::string, std::string> blur_faces(std::string_view image, const std::vector<Box>& faces) const;

 private:
  FaceDetector();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::processors
